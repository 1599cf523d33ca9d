"""``LogAttributePanel``: validation images captioned with their true and predicted attributes."""

from __future__ import annotations

import torch
from lightning import Callback, LightningModule, Trainer
from PIL import Image

from callbacks.base import is_evaluation_epoch
from callbacks.panels import (
    captioned_grid,
    image_normalization,
    log_images,
    resolve_attribute_names,
)


class LogAttributePanel(Callback):
    """Logs the first validation images captioned with true vs predicted positive attributes.

    The first validation batch (``batch["image"]``, ``batch["attributes"]``) is cached once; at the
    end of every ``every_n_epochs``-th validation epoch the module's ``forward`` (which must return
    logits (B, L)) is run on it in eval mode under ``no_grad``. Each caption has two lines,
    ``T:`` (true positives of the label) and ``P:`` (predicted, sigmoid >= threshold); a ``*`` marks
    an error: a true attribute that was missed, or a predicted one that is not in the label.
    Logged under ``val/attribute_panel``. Nothing is logged when the trainer has no logger.
    ``last_captions`` keeps the captions of the latest panel.

    Args:
        num_images: Images in the panel (at most the first validation batch size).
        every_n_epochs: Log every n validation epochs.
        max_attributes_in_caption: Names shown per caption line; the rest become "+k more".
        threshold: Probability threshold for a predicted positive.
        mean: Per-channel mean used to normalise the images (to undo it); default:
            ``trainer.datamodule.image_mean`` if present, else images are taken as in [0, 1].
        std: Per-channel std, as ``mean``.
        attribute_names: Names of the L attributes; default ``trainer.datamodule.attribute_names``.
    """

    def __init__(
        self,
        num_images: int = 16,
        every_n_epochs: int = 1,
        max_attributes_in_caption: int = 6,
        threshold: float = 0.5,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        attribute_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if num_images < 1 or every_n_epochs < 1 or max_attributes_in_caption < 1:
            raise ValueError(
                "num_images, every_n_epochs and max_attributes_in_caption must be >= 1"
            )
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.max_attributes_in_caption = max_attributes_in_caption
        self.threshold = threshold
        self.mean, self.std = mean, std
        self.attribute_names = attribute_names
        self.last_captions: list[str] = []
        self._batch: dict[str, torch.Tensor] | None = None

    def on_validation_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._batch is not None or batch_idx != 0 or dataloader_idx != 0:
            return
        if not isinstance(batch, dict) or "image" not in batch or "attributes" not in batch:
            raise ValueError("LogAttributePanel needs dict batches with 'image' and 'attributes'")
        n = self.num_images
        self._batch = {k: batch[k][:n].detach().cpu().clone() for k in ("image", "attributes")}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self._batch is None or not trainer.loggers:
            return
        if not is_evaluation_epoch(trainer, self.every_n_epochs):
            return
        if not trainer.is_global_zero:
            return
        caption = (
            f"epoch {trainer.current_epoch}: T = true positives, P = predicted "
            f"(p >= {self.threshold}); * marks an error"
        )
        log_images(trainer, "val/attribute_panel", [self.render(trainer, pl_module)], [caption])

    def render(self, trainer: Trainer, pl_module: LightningModule) -> Image.Image:
        """Run the module on the cached batch and draw the captioned grid."""
        if self._batch is None:
            raise RuntimeError("no validation batch cached yet")
        images, target = self._batch["image"], self._batch["attributes"] > 0.5
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            logits = pl_module(images.to(pl_module.device)).float().cpu()
        pl_module.train(was_training)
        if logits.shape != target.shape:
            raise ValueError(
                f"forward returned {tuple(logits.shape)}, attributes are {tuple(target.shape)}"
            )
        names = resolve_attribute_names(trainer, self.attribute_names, target.shape[1])
        predicted = logits.sigmoid() >= self.threshold
        captions = [self._caption(names, t, p) for t, p in zip(target, predicted, strict=True)]
        self.last_captions = captions
        title = (
            f"epoch {trainer.current_epoch}: T = true positives, P = predicted "
            f"(p >= {self.threshold}); * marks an error"
        )
        return captioned_grid(self._denormalise(trainer, images), captions, title=title)

    def _caption(self, names: list[str], true: torch.Tensor, pred: torch.Tensor) -> str:
        true_names = [names[j] + ("" if pred[j] else "*") for j in true.nonzero().flatten()]
        pred_names = [names[j] + ("" if true[j] else "*") for j in pred.nonzero().flatten()]
        return f"T: {self._shorten(true_names)}\nP: {self._shorten(pred_names)}"

    def _shorten(self, items: list[str]) -> str:
        k = self.max_attributes_in_caption
        if not items:
            return "(none)"
        more = f", +{len(items) - k} more" if len(items) > k else ""
        return ", ".join(items[:k]) + more

    def _denormalise(self, trainer: Trainer, images: torch.Tensor) -> torch.Tensor:
        stats = image_normalization(trainer, self.mean, self.std)
        if stats is None:
            return images.float().clamp(0, 1)
        mean, std = stats
        return (images.float() * std + mean).clamp(0, 1)
