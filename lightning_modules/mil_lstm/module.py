"""Multiple-instance learning on bags of images: one LightningModule, the bag pooling injected.

Wang, Oramas, Tuytelaars, "In Defense of LSTMs for Addressing Multiple Instance Learning
Problems", ACCV 2020 (thesis chapter 7), and the baselines of its Table 7.1. Reproduced by
``experiments/mil_lstm/*.yaml`` (one file per table cell; ``experiments/mil_lstm/table71.py``
runs the table through ``experiments/tables.py``).

A bag goes through the LeNet instance unit (``components/lenet.py``, 500-d), then the pooling
(``pooling.py`` states its interface), which scores the bag:

- ``LSTMPooling`` (``lstm.py``): bidirectional LSTM set encoder + prediction unit ("Ours");
- ``AttentionPooling`` (``attention.py``): attention or gated attention (Ilse et al. 2018);
- ``DynamicPooling`` (``dynamic_pooling.py``): routing (Yan et al. 2018), capsule or linear head.

Classification turns the score into the bag probability (sigmoid, unless the pooling's score is
one already) and trains with the pooling's ``classification_loss`` (Bernoulli NLL; the capsule
margin loss for the capsule head); counting takes the score as the count, trained with MSE and
predicted as round(max(0, y)). Optional Deep InfoMax regularizer on the instance unit
(``infomax.py``); total loss = ``loss_weight`` * (bag loss + L_DIM).

Batches are padded (``bag`` (B, T, 1, 28, 28), ``bag_mask`` (B, T)); padded positions never reach
the pooling's result, so a batch gives the per-bag outputs. ``validation_step``/``test_step``
return (``callbacks/keys.py``) ``PROBS`` + ``TARGET`` (B, 1) for classification and ``COUNT`` +
``TARGET_COUNT`` (B,) for counting. Logged: ``{stage}/loss``, ``{stage}/error`` (percent),
``{stage}/auroc`` (classification), ``{stage}/mae`` (counting), ``val/select`` (loss + error
fraction, the model-selection key). The val/test values are item-weighted means over every bag
of all ranks (``components/epoch_means.py``), the same on each rank under DDP; ``train/*`` are
step values of each rank's own batch.

In a YAML the pooling is a ``class_path`` / ``init_args`` entry without ``feature_dim`` (the
module passes it); in Python, the class or a ``functools.partial`` of it. The pooling is not a
hyperparameter of the checkpoint: ``MILModule.load_from_checkpoint(path, pooling=...)``.

Deviations: the validation bags come from held-out train images (the author's code used test
images); counting uses MSE on a linear head with prediction round(max(0, y)) (unspecified).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics.classification import BinaryAUROC

from callbacks import keys
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.lenet import LeNetInstanceEncoder
from lightning_modules.mil_lstm.infomax import InstanceInfoMax
from lightning_modules.mil_lstm.pooling import BagPooling

Batch = dict[str, torch.Tensor]


class MILModule(LightningModule):
    """LeNet instances -> injected pooling -> bag probability or count; losses and metrics.

    Args:
        pooling: Builds the pooling from the instance feature size: ``pooling(feature_dim)``
            returns a ``BagPooling`` (a pooling class, or a ``functools.partial`` of one). It is
            called after the instance unit is built, so a seed gives the instance unit the same
            weights whatever the pooling.
        objective: ``classification`` (bag probability, the pooling's classification loss) or
            ``regression`` (counts, MSE); must match the DataModule's ``is_regression``.
        feature_dim: Instance feature size (LeNet output, 500).
        infomax: Add the Deep InfoMax regularizer ("Ours"; the * baselines of Table 7.1).
        infomax_variant: ``thesis`` (author's code, default) or ``standard`` (Hjelm et al.).
        loss_weight: Factor on the total loss (5 in the author's code).
        lr: Adam learning rate (5e-4).
        weight_decay: Adam weight decay (1e-4).
    """

    def __init__(
        self,
        pooling: Callable[[int], BagPooling],
        objective: Literal["classification", "regression"] = "classification",
        feature_dim: int = 500,
        infomax: bool = False,
        infomax_variant: Literal["thesis", "standard"] = "thesis",
        loss_weight: float = 5.0,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["pooling"])
        if objective not in ("classification", "regression"):
            raise ValueError(f"objective: 'classification' or 'regression', got {objective!r}")
        if isinstance(pooling, nn.Module):
            raise TypeError(
                f"pooling must build the pooling from feature_dim (a class or functools.partial), "
                f"got the module {type(pooling).__name__}"
            )
        self.regression = objective == "regression"
        self.encoder = LeNetInstanceEncoder(1, feature_dim)
        self.infomax = InstanceInfoMax(feature_dim, variant=infomax_variant) if infomax else None
        self.val_auroc, self.test_auroc = BinaryAUROC(), BinaryAUROC()
        self.means = EpochMeans(
            [f"{stage}/{name}" for stage in ("val", "test") for name in ("loss", "error", "mae")]
            + ["val/select"]
        )
        self.pooling = pooling(feature_dim)
        if not isinstance(self.pooling, BagPooling):
            raise TypeError(f"pooling built {type(self.pooling).__name__}, not a BagPooling")
        if self.regression and self.pooling.score_is_probability:
            raise ValueError(
                f"objective='regression' needs a pooling that scores counts, but "
                f"{type(self.pooling).__name__} scores a probability (DynamicPooling: "
                "head='linear')"
            )

    @property
    def evaluation_outputs(self) -> tuple[str, ...]:
        """Keys of the val/test step outputs: the count pair or the probability pair."""
        return (keys.COUNT, keys.TARGET_COUNT) if self.regression else (keys.PROBS, keys.TARGET)

    def setup(self, stage: str) -> None:
        check_datamodule(self, {"is_regression": self.regression})

    def forward(self, bag: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 1, 28, 28) bags (+ (B, T) mask) -> (B,) bag probability or count."""
        return self.pool(*self.encode(bag, mask)[:2])

    def encode(self, bag: torch.Tensor, mask: torch.Tensor | None = None):
        """Run the instance unit on the valid instances only.

        Returns features (B, T, D) (zeros on padding), the mask (B, T), and the flat valid
        features (N, D) and local maps (N, 50, 4, 4) used by Deep InfoMax.
        """
        if mask is None:
            mask = torch.ones(bag.shape[:2], dtype=torch.bool, device=bag.device)
        flat, local = self.encoder(bag[mask])
        features = flat.new_zeros(*mask.shape, flat.shape[1])
        features[mask] = flat
        return features, mask, flat, local

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Instance features (B, T, D) + mask -> (B,) bag probability or count."""
        score = self.pooling(features, mask)
        if self.regression or self.pooling.score_is_probability:
            return score
        return torch.sigmoid(score)

    @torch.no_grad()
    def predict(self, bag: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Bag predictions: 0/1 at threshold 0.5, or the count round(max(0, y))."""
        return self._decide(self(bag, mask))

    def instance_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Features of single instances (N, E) for clustering (Table 7.5): singleton sets."""
        return self.pooling.singleton_embedding(self.encoder(images)[0])

    @torch.no_grad()
    def forward_states(self, bag: torch.Tensor) -> torch.Tensor | None:
        """The pooling's state after each instance of one bag (T, H) (Fig. 7.8), or None."""
        return self.pooling.forward_states(self.encoder(bag)[0])

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        features, mask, flat, local = self.encode(batch["bag"], batch["bag_mask"])
        output = self.pool(features, mask)
        target = batch["bag_label"].float()
        bag_loss = self._bag_loss(output, target)
        loss = bag_loss
        if self.infomax is not None:
            groups = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]
            dim = self.infomax(flat, local, groups)
            loss = loss + dim["loss"]
            self.log_dict({f"train/dim_{k}": v for k, v in dim.items()}, batch_size=len(target))
        loss = self.hparams.loss_weight * loss
        error = self._error(output, target)
        self.log_dict(  # step values only: each rank's own batch, no epoch mean to sync
            {"train/loss": loss, "train/bag_loss": bag_loss, "train/error": error},
            prog_bar=True,
            batch_size=len(target),
        )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_auroc)

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_auroc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(),
            lr=self.hparams.lr,
            betas=(0.9, 0.999),
            weight_decay=self.hparams.weight_decay,
        )

    def _evaluate(self, batch: Batch, stage: str, auroc: BinaryAUROC) -> dict[str, torch.Tensor]:
        output, target = self(batch["bag"], batch["bag_mask"]), batch["bag_label"].float()
        loss, error = self._bag_loss(output, target), self._error(output, target)
        size = len(target)
        self.means.log(self, {f"{stage}/loss": loss, f"{stage}/error": error}, batch_size=size)
        if stage == "val":
            self.means.log(self, {"val/select": loss + error / 100}, batch_size=size, prog_bar=True)
        if self.regression:
            mae = (output - target).abs().mean()
            self.means.log(self, {f"{stage}/mae": mae}, batch_size=size)
            return {keys.COUNT: output.detach(), keys.TARGET_COUNT: target}
        auroc.update(output, target.long())
        self.log(f"{stage}/auroc", auroc, batch_size=size)
        return {keys.PROBS: output[:, None].detach(), keys.TARGET: target[:, None]}

    def _bag_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE for counts; for classification, the pooling's loss (Bernoulli NLL by default)."""
        if self.regression:
            return F.mse_loss(output.float(), target)
        return self.pooling.classification_loss(output, target)

    def _decide(self, output: torch.Tensor) -> torch.Tensor:
        return output.clamp_min(0).round() if self.regression else (output >= 0.5).float()

    def _error(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 100.0 * (self._decide(output.detach()) != target).float().mean()
