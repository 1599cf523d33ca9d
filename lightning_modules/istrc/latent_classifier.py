"""ISTRC's stage 5: one latent attribute classifier C_a per attribute, on the encoder's unit z.

Li & Wang, "Image Semantic Transformation: Faster, Lighter and Stronger" (spec ``istrc``,
Architecture item 4, "Losses and training" C_a, Evaluation C_a). PAPER: a small fully connected
network per attribute, "about four to seven" layers (more for harder attributes) with activation
layers, trained with eq. (1), loss(p, y) = -[y log p + (1 - y) log(1 - p)], p = C_a(z). DEFAULT
(spec): width 256, ReLU, a final Linear(-> 1) and a sigmoid; ``depth`` Linear layers: 4 for
Smiling, Mouth_Slightly_Open, Male, Mustache, No_Beard, Heavy_Makeup; 6 for Big_Nose, Big_Lips,
Narrow_Eyes, Young; 7 for Attractive; Adam lr 1e-3, batch 256 (the DataModule's), 20 epochs (the
trainer's), no class re-weighting, keep the best val AUROC checkpoint (monitor
``val/auroc_macro``).

Not in the spec: attributes outside its table get ``default_depth`` (4, the smallest of the
table); ``depths`` overrides any. The networks are independent and are trained together: the
objective is the sum over attributes of each one's batch-mean BCE, so each network's gradient is
that of its own loss, and one Adam over all parameters makes the same updates as one Adam per
network (Adam is elementwise; nothing couples the parameters) with one optimizer step, one DDP
gradient reduction and one checkpoint. BCE is computed from the logits
(``binary_cross_entropy_with_logits``: eq. (1) on p = sigmoid(logit), finite where the sigmoid
saturates).

Batches: ``{"z" (B, D), "attributes" (B, L) in {0, 1}}`` (``datamodules.latents``), whose columns
must be this module's ``attributes`` in order (checked against the DataModule's
``attribute_names`` at setup). ``validation_step`` / ``test_step`` return ``LOGITS`` and
``TARGET`` (B, L) for ``callbacks.auroc.LogAUROC`` (per-attribute ``{stage}/auroc/<name>`` and
``{stage}/auroc_macro``, exact over all ranks). Logged by the module, as exact item-weighted
epoch means over all ranks (``EpochMeans``): ``{train,val,test}/loss`` (the summed BCE),
``{val,test}/accuracy/<name>`` (1{logit > 0} = y, i.e. p > 0.5) and ``{val,test}/accuracy_macro``.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torch.nn import functional as F

from callbacks import keys
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.mlp import MLP

__all__ = ["DEFAULT_ATTRIBUTES", "DEPTHS", "LatentAttributeClassifier", "attribute_bce"]

#: The spec's 11 edited attributes (``istrc.attributes``).
DEFAULT_ATTRIBUTES = (
    "Male",
    "Smiling",
    "Mouth_Slightly_Open",
    "No_Beard",
    "Mustache",
    "Big_Nose",
    "Young",
    "Big_Lips",
    "Narrow_Eyes",
    "Attractive",
    "Heavy_Makeup",
)
#: Linear layers of C_a per attribute (spec Architecture item 4).
DEPTHS = {
    **dict.fromkeys(
        ("Smiling", "Mouth_Slightly_Open", "Male", "Mustache", "No_Beard", "Heavy_Makeup"), 4
    ),
    **dict.fromkeys(("Big_Nose", "Big_Lips", "Narrow_Eyes", "Young"), 6),
    "Attractive": 7,
}
EVAL_STAGES = ("val", "test")


def attribute_bce(logits: Tensor, target: Tensor) -> Tensor:
    """(L,) eq. (1) per attribute, the mean over the batch: -[y log p + (1 - y) log(1 - p)],
    p = sigmoid(logits); ``logits`` and ``target`` (B, L)."""
    losses = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    return losses.mean(0)


class LatentAttributeClassifier(LightningModule):
    """C_a = sigmoid o MLP for each configured attribute, trained together on cached z.

    Args:
        attributes: The attributes, in the order of the data's columns; None = the spec's 11
            (``DEFAULT_ATTRIBUTES``).
        latent_dim: D, the size of z (128; 32 at the spec's test scale).
        width: Width of every hidden layer (256).
        depths: Linear layers per attribute, overriding ``DEPTHS`` (e.g. ``{Male: 5}``).
        default_depth: Linear layers of an attribute neither in ``DEPTHS`` nor in ``depths``.
        lr: Adam learning rate (1e-3).
    """

    evaluation_outputs = (keys.LOGITS, keys.TARGET)

    def __init__(
        self,
        attributes: list[str] | None = None,
        latent_dim: int = 128,
        width: int = 256,
        depths: dict[str, int] | None = None,
        default_depth: int = 4,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.attributes = list(DEFAULT_ATTRIBUTES if attributes is None else attributes)
        plan = _depth_plan(self.attributes, depths or {}, default_depth)
        self.classifiers = nn.ModuleDict(
            {name: MLP(latent_dim, (width,) * (plan[name] - 1), 1) for name in self.attributes}
        )
        names = ["train/loss"]
        for stage in EVAL_STAGES:
            names += [f"{stage}/loss", f"{stage}/accuracy_macro"]
            names += [f"{stage}/accuracy/{name}" for name in self.attributes]
        self.means = EpochMeans(names)

    def forward(self, z: Tensor) -> Tensor:
        """C_a(z) for every attribute: (B, D) -> probabilities (B, L)."""
        return torch.sigmoid(self.logits(z))

    def logits(self, z: Tensor) -> Tensor:
        """(B, D) -> logits (B, L), one column per attribute."""
        return torch.cat([self.classifiers[name](z) for name in self.attributes], dim=1)

    def logit_network(self, attribute: str) -> nn.Module:
        """C_a of ``attribute`` without its final sigmoid: (B, D) -> logits (B, 1), as
        ``istrc.edit_path.semantic_transformation`` takes it."""
        if attribute not in self.classifiers:
            raise KeyError(f"no classifier for {attribute!r}; this module has {self.attributes}")
        return self.classifiers[attribute]

    def setup(self, stage: str) -> None:
        """The data's columns must be ``attributes``, its z of size ``latent_dim``."""
        expected = {"attribute_names": self.attributes, "latent_dim": self.hparams.latent_dim}
        check_datamodule(self, expected)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        logits, target = self._logits_and_target(batch)
        loss = attribute_bce(logits, target).sum()
        self.means.log(self, {"train/loss": loss}, batch_size=len(logits), on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One Adam over every classifier (equivalent to one per classifier, see the module)."""
        return torch.optim.Adam(self.classifiers.parameters(), lr=self.hparams.lr)

    def _logits_and_target(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        logits, target = self.logits(batch["z"]), batch["attributes"]
        if target.shape != logits.shape:
            raise ValueError(
                f"batch attributes {tuple(target.shape)} do not match the {len(self.attributes)} "
                f"classifiers {self.attributes}"
            )
        return logits, target

    def _evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        logits, target = self._logits_and_target(batch)
        hits = ((logits > 0) == target.bool()).float()  # (B, L)
        values = {f"{stage}/loss": attribute_bce(logits, target).sum()}
        values[f"{stage}/accuracy_macro"] = hits.mean()
        for j, name in enumerate(self.attributes):
            values[f"{stage}/accuracy/{name}"] = hits[:, j].mean()
        self.means.log(self, values, batch_size=len(logits), on_epoch=True)
        return {keys.LOGITS: logits.detach(), keys.TARGET: target.detach()}


def _depth_plan(attributes: list[str], overrides: dict[str, int], default: int) -> dict[str, int]:
    """Linear layers per attribute; bad names or depths -> ValueError."""
    if not attributes or len(set(attributes)) != len(attributes):
        raise ValueError(f"attributes must be distinct and at least one, got {attributes}")
    unknown = sorted(set(overrides) - set(attributes))
    if unknown:
        raise ValueError(f"depths names attributes that are not classified: {unknown}")
    plan = {name: overrides.get(name, DEPTHS.get(name, default)) for name in attributes}
    bad = {name: depth for name, depth in plan.items() if depth < 1}
    if bad:
        raise ValueError(f"every depth (Linear layers) must be >= 1, got {bad}")
    return plan
