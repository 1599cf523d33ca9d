"""The classifier F that VEBI explains (thesis ch. 3; spec section 3 and 4): a plain
cross-entropy classifier trained with SGD (lr 0.01, momentum 0.9, weight decay 5e-4).

The chapter does not describe how its classifiers were trained; the spec's defaults are used.
``net`` names one of :mod:`lightning_modules.vebi.nets`: the MNIST LeNet, the an8Flower CNN
with its strided conv3, or AlexNet (the VGG-F substitute for CUB; ImageNet weights only from a
local file, ``weights``). Every net is a flat sequence of the module types the heatmap walk
supports, which is what VEBI's later stages load (``--run.init_from`` part ``net``).

Logged: ``train/loss``, ``train/accuracy``, ``{val,test}/loss``, ``{val,test}/accuracy`` (item
means over all ranks, ``components.epoch_means``) and ``{val,test}/mca`` (mean class accuracy,
the Fig. 3.4 measure: torchmetrics' macro accuracy, synced over ranks at the epoch's end).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.vebi.nets import NetName, build_net

__all__ = ["VEBIClassifier"]


class VEBIClassifier(LightningModule):
    """F for VEBI.

    Args:
        net: ``mnist_lenet``, ``an8flower_cnn`` or ``alexnet`` (see ``vebi.nets``).
        num_classes: Classes of the dataset.
        weights: Local file of weights for ``net`` (AlexNet's ImageNet weights; nothing is
            downloaded); None: random initialisation.
        image_size: Side of the an8Flower CNN's input (64; 128 on the GPU tier).
        lr: SGD learning rate (0.01).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (5e-4).
    """

    def __init__(
        self,
        net: NetName = "mnist_lenet",
        num_classes: int = 10,
        weights: str | None = None,
        image_size: int = 64,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_net(net, num_classes, weights, image_size)
        self.means = EpochMeans(
            ["train/loss", "train/accuracy"]
            + [f"{stage}/{name}" for stage in ("val", "test") for name in ("loss", "accuracy")]
        )
        self.mca = torch.nn.ModuleDict(
            {stage: MulticlassAccuracy(num_classes, average="macro") for stage in ("val", "test")}
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> class scores (B, num_classes)."""
        return self.net(images)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        values = {f"{stage}/loss": loss.detach(), f"{stage}/accuracy": accuracy}
        self.means.log(self, values, batch_size=len(labels))
        if stage in self.mca:
            self.mca[stage].update(logits.detach(), labels)
            self.log(f"{stage}/mca", self.mca[stage], on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(
            self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
