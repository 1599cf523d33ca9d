"""LSTM-based multiple-instance learning.

Wang, Oramas, Tuytelaars, "In Defense of LSTMs for Addressing Multiple Instance Learning
Problems", ACCV 2020 (thesis chapter 7). Reproduced by ``experiments/mil_lstm/*.yaml`` (one file
per Table 7.1 cell; ``experiments/mil_lstm/table71.py`` runs the whole table).

A bag goes through the LeNet instance unit (500-d), a one-layer bidirectional LSTM (500 -> 500;
f_set = [forward state after the last instance; backward state after the first]) and a
prediction unit (Dropout 0.5 + Linear; sigmoid for classification, identity for counting).
Optional Deep InfoMax regularizer on the instance unit; total loss = 5 * (NLL + L_DIM).

Batches are padded (``bag`` (B, T, 1, 28, 28), ``bag_mask`` (B, T)); padded positions never
reach the LSTM (packed sequences) or the attention softmax, so a batch gives the per-bag outputs.
``validation_step``/``test_step`` return ``logits`` and ``target`` (B, 1) (bag probability and
label; for counting the predicted and true count). Logged: ``{stage}/loss``, ``{stage}/error``
(percent), ``{stage}/auroc`` (classification), ``{stage}/mae`` (counting), ``val/select``
(NLL + error fraction, the model-selection key).

Deviations: the validation bags come from held-out train images (the author's code used test
images); counting uses MSE on a linear head with prediction round(max(0, y)) (unspecified).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torchmetrics.classification import BinaryAUROC

from lightning_modules.components.infomax import InstanceInfoMax
from lightning_modules.components.networks import LeNetInstanceEncoder

Batch = dict[str, torch.Tensor]


class MILModule(LightningModule):
    """Shared MIL training logic: LeNet instances -> ``pool`` -> bag score; losses and metrics.

    Subclasses call ``_build(...)`` in ``__init__`` and implement ``pool(features, mask)``, which
    maps instance features (B, T, D) and the mask (B, T) to the bag output (B,): a probability in
    [0, 1] for classification, a count for regression.
    """

    def _build(self, regression: bool, infomax: bool, infomax_variant: str) -> None:
        self.regression = regression
        self.encoder = LeNetInstanceEncoder(1, self.hparams.feature_dim)
        self.infomax = (
            InstanceInfoMax(self.hparams.feature_dim, variant=infomax_variant) if infomax else None
        )
        self.val_auroc, self.test_auroc = BinaryAUROC(), BinaryAUROC()

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        is_regression = getattr(datamodule, "is_regression", None)
        if is_regression is not None and is_regression != self.regression:
            raise ValueError(
                f"{type(self).__name__}(objective={self.hparams.objective!r}) does not fit a "
                f"{'counting' if is_regression else 'classification'} DataModule: set objective="
                f"{'regression' if is_regression else 'classification'}"
            )

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

    @torch.no_grad()
    def predict(self, bag: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Bag predictions: 0/1 at threshold 0.5, or the count round(max(0, y))."""
        return self._decide(self(bag, mask))

    def instance_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Features of single instances for clustering (Table 7.5): the instance unit's output."""
        return self.encoder(images)[0]

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
        self.log_dict(
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
        self.log_dict({f"{stage}/loss": loss, f"{stage}/error": error}, batch_size=size)
        if stage == "val":
            self.log("val/select", loss + error / 100, prog_bar=True, batch_size=size)
        if self.regression:
            self.log(f"{stage}/mae", (output - target).abs().mean(), batch_size=size)
        else:
            auroc.update(output, target.long())
            self.log(f"{stage}/auroc", auroc, batch_size=size)
        return {"logits": output[:, None].detach(), "target": target[:, None]}

    def _bag_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Bernoulli NLL with p clamped to [1e-5, 1 - 1e-5] (Ilse et al.), or MSE for counts."""
        if self.regression:
            return F.mse_loss(output.float(), target)
        p = output.float().clamp(1e-5, 1 - 1e-5)
        return -(target * p.log() + (1 - target) * (1 - p).log()).mean()

    def _decide(self, output: torch.Tensor) -> torch.Tensor:
        return output.clamp_min(0).round() if self.regression else (output >= 0.5).float()

    def _error(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 100.0 * (self._decide(output.detach()) != target).float().mean()


class MILLSTM(MILModule):
    """LeNet + bidirectional LSTM set encoder + prediction unit (thesis Fig. 7.1).

    Args:
        objective: ``classification`` (sigmoid head, Bernoulli NLL) or ``regression`` (counts, MSE).
        feature_dim: Instance feature size (LeNet output, 500).
        hidden_dim: LSTM hidden size per direction (500); f_set has 2 * hidden_dim entries.
        dropout: Dropout before the prediction layer (0.5).
        infomax: Add the Deep InfoMax regularizer ("Ours"); False = "Ours w/o Mut. Info.".
        infomax_variant: ``thesis`` (author's code, default) or ``standard`` (Hjelm et al.).
        loss_weight: Factor on the total loss (5 in the author's code).
        lr: Adam learning rate (5e-4).
        weight_decay: Adam weight decay (1e-4).
    """

    def __init__(
        self,
        objective: Literal["classification", "regression"] = "classification",
        feature_dim: int = 500,
        hidden_dim: int = 500,
        dropout: float = 0.5,
        infomax: bool = True,
        infomax_variant: Literal["thesis", "standard"] = "thesis",
        loss_weight: float = 5.0,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._build(objective == "regression", infomax, infomax_variant)
        self.lstm = nn.LSTM(
            feature_dim, hidden_dim, num_layers=1, bidirectional=True, batch_first=True
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden_dim, 1))

    def set_representation(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Instance features (B, T, D) + mask -> f_set (B, 2H) from the packed BiLSTM."""
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # (2, B, H): forward after last step, backward after first
        return torch.cat([h_n[0], h_n[1]], dim=1)

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        score = self.head(self.set_representation(features, mask))[:, 0]
        return score if self.regression else torch.sigmoid(score)

    def instance_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """f_set of each image as a singleton set (N, 2H) (Table 7.5, Figs. 7.9/7.10)."""
        features = self.encoder(images)[0][:, None]
        return self.set_representation(
            features, torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        )

    @torch.no_grad()
    def forward_states(self, bag: torch.Tensor) -> torch.Tensor:
        """Hidden states of the forward LSTM after each instance of one bag (T, H) (Fig. 7.8)."""
        features = self.encoder(bag)[0][None]
        return self.lstm(features)[0][0, :, : self.hparams.hidden_dim]
