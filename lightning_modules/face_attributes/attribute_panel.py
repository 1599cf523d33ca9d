"""``LogAttributePanel``: validation images captioned with their true and predicted attributes."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning import LightningModule, Trainer
from PIL import Image

from callbacks import keys
from callbacks.base import EvaluationCallback, FirstBatch, evaluated_epoch
from callbacks.panels import (
    captioned_grid,
    image_normalization,
    log_images,
    resolve_attribute_names,
)


class LogAttributePanel(EvaluationCallback):
    """Logs the first validation images captioned with true vs predicted positive attributes.

    Draws from what the first validation step of an evaluated epoch returned (``LOGITS`` and
    ``TARGET``, ``callbacks/keys.py``) and the ``image`` of its batch: the module ran in eval mode
    under ``no_grad``, and an unshuffled validation loader shows the same images every time. Each
    caption has two lines, ``T:`` (true positives of the label) and ``P:`` (predicted, sigmoid >=
    threshold); a ``*`` marks an error: a true attribute that was missed, or a predicted one that
    is not in the label. Logged under ``val/attribute_panel`` on rank zero, at the epochs of the
    suite's epoch rule. Nothing is logged when the trainer has no logger. ``last_captions`` keeps
    the captions of the latest panel.

    Args:
        num_images: Images in the panel (at most the first validation batch size).
        every_n_epochs: Log after every n-th validation epoch (and after the last).
        max_attributes_in_caption: Names shown per caption line; the rest become "+k more".
        threshold: Probability threshold for a predicted positive.
        mean: Per-channel mean used to normalise the images (to undo it); default:
            ``trainer.datamodule.image_mean`` if present, else images are taken as in [0, 1].
        std: Per-channel std, as ``mean``.
        attribute_names: Names of the L attributes; default ``trainer.datamodule.attribute_names``.
    """

    required_keys = (keys.LOGITS, keys.TARGET)

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
        super().__init__(["val"], every_n_epochs)
        if num_images < 1 or max_attributes_in_caption < 1:
            raise ValueError("num_images and max_attributes_in_caption must be >= 1")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.num_images = num_images
        self.max_attributes_in_caption = max_attributes_in_caption
        self.threshold = threshold
        self.mean, self.std = mean, std
        self.attribute_names = attribute_names
        self.last_captions: list[str] = []

    def make_metrics(self, stage: str) -> FirstBatch:
        return FirstBatch(self.num_images)

    def update(self, metrics: FirstBatch, outputs, batch, pl_module: LightningModule) -> None:
        if metrics.values is not None:
            return
        if not isinstance(batch, Mapping) or "image" not in batch:
            raise ValueError("LogAttributePanel needs dict batches with 'image'")
        logits, target = outputs[keys.LOGITS], outputs[keys.TARGET]
        if logits.shape != target.shape:
            raise ValueError(
                f"LogAttributePanel: logits {tuple(logits.shape)} and target "
                f"{tuple(target.shape)} differ"
            )
        metrics.keep({"image": batch["image"], "logits": logits.float(), "target": target})

    def report(self, stage: str, metrics: FirstBatch, trainer: Trainer, pl_module) -> None:
        metrics.gather(trainer.world_size)  # every rank: the first rows in dataset order
        if metrics.values is None or not trainer.loggers or not trainer.is_global_zero:
            return
        panel = self.render(trainer, metrics)
        log_images(trainer, "val/attribute_panel", [panel], [self._title(trainer)])

    def render(self, trainer: Trainer, metrics: FirstBatch) -> Image.Image:
        """Draw the captioned grid of the kept images, targets and logits."""
        images, logits = metrics.values["image"], metrics.values["logits"]
        target = metrics.values["target"] > 0.5
        names = resolve_attribute_names(trainer, self.attribute_names, target.shape[1])
        predicted = logits.sigmoid() >= self.threshold
        captions = [self._caption(names, t, p) for t, p in zip(target, predicted, strict=True)]
        self.last_captions = captions
        images = self._denormalise(trainer, images)
        return captioned_grid(images, captions, title=self._title(trainer))

    def _title(self, trainer: Trainer) -> str:
        return (
            f"epoch {evaluated_epoch(trainer)}: T = true positives, P = predicted "
            f"(p >= {self.threshold}); * marks an error"
        )

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
