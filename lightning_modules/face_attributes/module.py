"""Multi-label face attribute classifier with class-weighted BCE.

Le & Lee, "A multi-label Classification of Attributes on Face Images" (CelebA -> FFHQ labels).
An SE-ResNeXt-101 (32x4d) with a 40-way linear head is trained on CelebA with the class-balanced
binary cross-entropy of eqs. 1-6, evaluated by per-attribute AUROC, thresholded per attribute by a
0.01-step grid search minimising Hamming loss on the test split, and used to label FFHQ.
Reproduced by ``experiments/face_attributes/*.yaml``; spec: ``shared/specs/attributes.md``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Literal

import torch
from lightning import LightningModule
from torchmetrics.classification import MultilabelHammingDistance

from callbacks import keys
from callbacks.gather import gather_rows
from callbacks.global_log import log_global
from lightning_modules.components.backbones import create_backbone
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.pretrained import initial_weights
from lightning_modules.face_attributes.losses import attribute_bce, attribute_weights
from lightning_modules.face_attributes.thresholds import (
    hamming_per_label,
    search_thresholds,
    threshold_grid,
)


class FaceAttributeClassifier(LightningModule):
    """timm backbone + linear head over ``num_attributes`` binary attributes.

    Batches carry ``image`` (B, 3, H, W), already resized and normalised by the DataModule (timm
    pretrained mean/std), and, except for prediction, ``attributes`` (B, L) in {0, 1}.
    ``validation_step`` and ``test_step`` return ``LOGITS`` and ``TARGET`` (B, L)
    (``callbacks/keys.py``) for the AUROC callback; ``predict_step`` returns ``PROBS`` and
    ``IMAGE_ID``. At the end of the test epoch the per-attribute thresholds are searched on the
    accumulated test probabilities, kept in the ``thresholds`` buffer and written to
    ``<log_dir>/thresholds.json``. ``predict_step`` returns ``{"probs", "image_id"}`` (+ ``index``).
    On another machine, ``load_from_checkpoint(path, random_init=True)`` skips re-reading the
    ImageNet file (the checkpoint holds every weight).

    Args:
        model_name: timm architecture (paper: ``seresnext101_32x4d``).
        num_attributes: Number of binary attributes (CelebA: 40); checked against the DataModule.
        weights_file: ImageNet weights for the trunk: a key of the pretrained-file manifest
            (``components/pretrained.py``, e.g. ``seresnext101_32x4d``) or a path; None = random
            initialisation (logged).
        random_init: Start from random weights even though ``weights_file`` names a file: the
            explicit opt-out of a paper configuration (logged as a warning).
        pretrained: Require pretrained weights (then ``weights_file`` must be given).
        model_kwargs: Extra timm constructor arguments (tests shrink the network with them).
        weight_mode: ``class`` (paper, eqs. 4-6), ``pos_weight`` (ablation) or ``none``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_epochs: Linear warm-up length before the cosine decay.
        max_epochs: Length of the cosine schedule; None = the trainer's ``max_epochs``.
        threshold_grid_step: Step of the threshold grid ``step, 2 step, ..., 1.0``.
        attribute_names: Column names; None = taken from the DataModule (and checked when given).
    """

    evaluation_outputs = (keys.LOGITS, keys.TARGET)

    def __init__(
        self,
        model_name: str = "seresnext101_32x4d",
        num_attributes: int = 40,
        weights_file: str | None = None,
        random_init: bool = False,
        pretrained: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        weight_mode: Literal["class", "pos_weight", "none"] = "class",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 1.0,
        max_epochs: int | None = None,
        threshold_grid_step: float = 0.01,
        attribute_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if attribute_names is not None and len(attribute_names) != num_attributes:
            raise ValueError(
                f"{len(attribute_names)} attribute_names for {num_attributes} attributes"
            )
        self.model = create_backbone(
            model_name,
            num_classes=num_attributes,
            weights_file=initial_weights(type(self).__name__, weights_file, random_init),
            pretrained=pretrained,
            model_kwargs=model_kwargs,
        )
        self.attribute_names = list(attribute_names) if attribute_names else None
        self.register_buffer("class_weights", torch.ones(num_attributes))
        self.register_buffer("train_prevalence", torch.full((num_attributes,), float("nan")))
        self.register_buffer("thresholds", torch.full((num_attributes,), 0.5))
        self.register_buffer("thresholds_tuned", torch.tensor(False))
        metric = {"num_labels": num_attributes, "threshold": 0.5, "average": "micro"}
        self.train_hamming = MultilabelHammingDistance(**metric)
        self.val_hamming = MultilabelHammingDistance(**metric)
        self.test_hamming = MultilabelHammingDistance(**metric)
        self.losses = EpochMeans(f"{stage}/loss" for stage in ("train", "val", "test"))
        self._test_probs: list[torch.Tensor] = []
        self._test_target: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, L) logits."""
        return self.model(images)

    # --- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the DataModule's attributes; on ``fit`` compute class weights from train labels."""
        datamodule = getattr(self.trainer, "datamodule", None)
        self._check_attributes(datamodule)
        if stage != "fit":
            return
        labels = getattr(datamodule, "train_attributes", None)
        if labels is None:
            raise ValueError(
                "FaceAttributeClassifier needs a DataModule with `train_attributes` (N, L) to "
                "compute the class weights (eqs. 4-6)"
            )
        labels = torch.as_tensor(labels)
        self.class_weights.copy_(attribute_weights(labels, self.hparams.weight_mode))
        self.train_prevalence.copy_(labels.double().mean(0))

    def _check_attributes(self, datamodule: Any) -> None:
        """Count and names must agree with the data; names the model lacks are taken from it."""
        expected: dict[str, Any] = {"num_attributes": self.hparams.num_attributes}
        if self.attribute_names is not None:
            expected["attribute_names"] = self.attribute_names
        check_datamodule(self, expected)
        names = getattr(datamodule, "attribute_names", None)
        if names is not None:
            self.attribute_names = list(names)

    def names(self) -> list[str]:
        """Attribute names (from the DataModule or checkpoint), else ``attr_<j>``."""
        if self.attribute_names is not None:
            return list(self.attribute_names)
        return [f"attr_{j}" for j in range(self.hparams.num_attributes)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["attribute_names"] = self.attribute_names

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.attribute_names = checkpoint.get("attribute_names") or self.attribute_names

    # --- steps -----------------------------------------------------------------------------------

    def _shared_step(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        logits = self(batch["image"])
        target = batch["attributes"]
        loss = attribute_bce(logits, target, self.class_weights, self.hparams.weight_mode)
        metric = getattr(self, f"{stage}_hamming")
        metric.update(torch.sigmoid(logits.detach()), target.long())
        size, train = target.shape[0], stage == "train"
        epoch = {"on_epoch": True, "batch_size": size}
        self.losses.log(self, {f"{stage}/loss": loss}, on_step=train, prog_bar=True, **epoch)
        self.log(f"{stage}/hamming", metric, on_step=False, prog_bar=not train, **epoch)
        return {"loss": loss, keys.LOGITS: logits.detach(), keys.TARGET: target}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch, "val")
        return {keys.LOGITS: out[keys.LOGITS], keys.TARGET: out[keys.TARGET]}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch, "test")
        self._test_probs.append(torch.sigmoid(out[keys.LOGITS].float()).cpu())
        self._test_target.append(out[keys.TARGET].detach().cpu())
        return {keys.LOGITS: out[keys.LOGITS], keys.TARGET: out[keys.TARGET]}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probs = torch.sigmoid(self(batch["image"]).float())
        out = {keys.PROBS: probs, keys.IMAGE_ID: list(batch["image_id"])}
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    # --- thresholds ------------------------------------------------------------------------------

    def on_test_epoch_start(self) -> None:
        self._test_probs, self._test_target = [], []

    def on_test_epoch_end(self) -> None:
        """Grid-search one threshold per attribute on the test probabilities (spec stage 4)."""
        if not self._test_probs:
            return
        probs = self._gather(torch.cat(self._test_probs))
        target = self._gather(torch.cat(self._test_target))
        self._test_probs, self._test_target = [], []
        taus, tuned = search_thresholds(
            probs, target, threshold_grid(self.hparams.threshold_grid_step)
        )
        self.thresholds.copy_(taus.float())
        self.thresholds_tuned.fill_(True)
        at_half = hamming_per_label(probs, target, torch.full_like(taus, 0.5))
        log_global(
            self, {"test/hamming_tuned": tuned.mean(), "test/hamming_at_0.5": at_half.mean()}
        )
        log_dir = self.trainer.log_dir
        if self.trainer.is_global_zero and log_dir is not None:
            self._write_thresholds(Path(log_dir), probs, target, tuned, at_half)

    def _gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every rank's test rows, in dataset order (``callbacks.gather.gather_rows``)."""
        return gather_rows(values).cpu()

    def _write_thresholds(self, out_dir, probs, target, tuned, at_half) -> None:
        """``thresholds.json`` {name: tau} and ``threshold_search.csv`` (per-attribute report)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        names, taus = self.names(), self.thresholds.double().cpu()
        (out_dir / "thresholds.json").write_text(
            json.dumps({n: round(float(t), 6) for n, t in zip(names, taus, strict=True)}, indent=2)
            + "\n"
        )
        pred = probs.double() >= taus.view(1, -1)
        truth = target.bool()
        tp = (pred & truth).sum(0).double()
        f1 = 2 * tp / (pred.sum(0) + truth.sum(0)).double().clamp_min(1)
        positives = truth.sum(0)
        mean_positive = (probs.double() * truth).sum(0) / positives.clamp_min(1)
        with (out_dir / "threshold_search.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                [
                    "attribute",
                    "tau",
                    "hamming_tuned",
                    "hamming_at_0.5",
                    "accuracy",
                    "f1",
                    "test_prevalence",
                    "class_weight",
                    "mean_prob_positive",
                ]
            )
            for j, name in enumerate(names):
                writer.writerow(
                    [
                        name,
                        f"{taus[j]:.2f}",
                        f"{tuned[j]:.6f}",
                        f"{at_half[j]:.6f}",
                        f"{1 - tuned[j]:.6f}",
                        f"{f1[j]:.6f}",
                        f"{truth[:, j].double().mean():.6f}",
                        f"{self.class_weights[j]:.6f}",
                        f"{mean_positive[j]:.6f}" if positives[j] > 0 else "",
                    ]
                )

    # --- optimisation ----------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW, linear warm-up over ``warmup_epochs`` then cosine decay, stepped per batch."""
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        trainer_epochs = self.trainer.max_epochs
        per_epoch = total / trainer_epochs if trainer_epochs and trainer_epochs > 0 else total
        epochs = self.hparams.max_epochs or trainer_epochs
        length = max(1, round(per_epoch * epochs)) if epochs and epochs > 0 else total
        warmup = min(length - 1, round(per_epoch * self.hparams.warmup_epochs))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(warmup, length))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _warmup_cosine(warmup: int, total: int):
    """LR factor: linear ramp to 1 over ``warmup`` steps, then cosine to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
