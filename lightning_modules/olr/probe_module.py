"""OLR's linear-probe stage: one dense layer on the frozen Siamese embeddings predicts the labels.

Karatsiolis & Kamilaris, "Converting Image Labels to Meaningful and Information-rich Embeddings":
a single sigmoid layer (1216 -> 38) trained on the embeddings E of clean training images with
their ground-truth labels reaches 91.6% test label accuracy against the classifier's 94.2%. The
Siamese encoder comes from the stage before (``--run.init_from`` into ``encoder``) and stays
frozen. Reproduced by ``experiments/olr/*_probe.yaml``; spec: ``shared/specs/olr.md``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning import LightningModule

from callbacks import keys
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.frozen import FrozenSubmodules
from lightning_modules.olr.accuracy import label_accuracy, majority_class
from lightning_modules.olr.frozen_encoder import embed, frozen_encoder
from lightning_modules.olr.probe import LinearProbe

__all__ = ["OLRLinearProbe"]

STAGES = ("train", "val", "test")


class OLRLinearProbe(FrozenSubmodules, LightningModule):
    """Frozen ``encoder`` (SiameseEncoder) + ``probe`` (LinearProbe), BCE on the labels.

    Batches carry ``image`` (B, 3, H, W) in [0, 1] and ``attributes`` (B, L) in {0, 1}
    (``datamodules.olr.OLRDataModule(pairs=False)``). Logged, as exact epoch means over all
    images of all ranks: ``{train,val,test}/loss`` (BCE) and ``{train,val,test}/accuracy``
    (the paper's success rate, mean over images and labels of 1{(p >= 0.5) == y}), and
    ``{val,test}/majority_accuracy``: the per-label majority class of the train labels
    (``train_attributes`` of the DataModule, taken at setup and kept in the ``majority`` buffer)
    scored on the evaluated labels. ``validation_step`` / ``test_step`` return ``LOGITS`` and
    ``TARGET`` (B, L) for ``callbacks.auroc.LogAUROC``; ``predict_step`` returns ``PROBS`` and
    ``IMAGE_ID``.

    Args:
        num_labels: L (38), checked against the DataModule's ``num_attributes``.
        embedding_dim: k (32 in the paper).
        widths: The Siamese encoder's trunk widths (as in its stage; None = its DEFAULT).
        convs_per_stage: The Siamese encoder's conv blocks per trunk stage.
        embed_act: The Siamese encoder's label-layer activation.
        lr: Adam learning rate (DEFAULT 1e-3).
        threshold: A label is predicted present when its probability is >= this (0.5).
    """

    evaluation_outputs = (keys.LOGITS, keys.TARGET)
    frozen = ("encoder",)

    def __init__(
        self,
        num_labels: int = 38,
        embedding_dim: int = 32,
        widths: list[int] | None = None,
        convs_per_stage: int = 2,
        embed_act: Literal["relu", "linear"] = "relu",
        lr: float = 1e-3,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = frozen_encoder(self.hparams)
        self.probe = LinearProbe(num_labels, embedding_dim)
        self.register_buffer("majority", torch.full((num_labels,), -1.0))
        names = [f"{s}/{m}" for s in STAGES for m in ("loss", "accuracy")]
        self.means = EpochMeans(names + ["val/majority_accuracy", "test/majority_accuracy"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> label logits (B, L)."""
        return self.probe(embed(self.encoder, images))

    def setup(self, stage: str) -> None:
        """Check the label count; take the per-label majority class of the train labels."""
        check_datamodule(self, {"num_attributes": self.hparams.num_labels})
        labels = getattr(getattr(self.trainer, "datamodule", None), "train_attributes", None)
        if labels is not None:
            self.majority.copy_(majority_class(torch.as_tensor(labels)).float())

    def _step(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        logits, target = self(batch["image"]), batch["attributes"].float()
        loss = F.binary_cross_entropy_with_logits(logits, target)
        accuracy = label_accuracy(logits.detach().sigmoid(), target, self.hparams.threshold)
        values = {f"{stage}/loss": loss, f"{stage}/accuracy": accuracy}
        if stage != "train":
            if (self.majority < 0).any():
                raise RuntimeError(
                    "OLRLinearProbe: no majority baseline; the DataModule must expose "
                    "`train_attributes` (datamodules.olr.OLRDataModule does)"
                )
            majority = self.majority.expand_as(target)
            values[f"{stage}/majority_accuracy"] = label_accuracy(majority, target)
        train = stage == "train"
        self.means.log(
            self, values, batch_size=target.shape[0], on_step=train, on_epoch=True, prog_bar=True
        )
        return {"loss": loss, keys.LOGITS: logits.detach(), keys.TARGET: target}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._step(batch, "val")
        return {keys.LOGITS: out[keys.LOGITS], keys.TARGET: out[keys.TARGET]}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._step(batch, "test")
        return {keys.LOGITS: out[keys.LOGITS], keys.TARGET: out[keys.TARGET]}

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Label probabilities of clean images, one predict loader per split."""
        return {keys.PROBS: self(batch["image"]).sigmoid(), keys.IMAGE_ID: batch["image_id"]}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the probe only (the encoder is frozen)."""
        return torch.optim.Adam(self.probe.parameters(), lr=self.hparams.lr)
