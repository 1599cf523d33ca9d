"""ISTRC's stage 4: the mapping F from the face encoder's unit latents z to the BEGAN bottleneck h.

Li & Wang, "Image Semantic Transformation: Faster, Lighter and Stronger" (spec ``istrc``,
Architecture item 3, "Losses and training" F, Evaluation F). PAPER: five fully connected layers
with batch normalisation and tanh, trained with "MSE with regularization" (CNNs failed). DEFAULT
(spec): widths D -> 512 -> 512 -> 512 -> 512 -> Nh, layers 1-4 Linear -> BatchNorm1d -> tanh,
layer 5 Linear only (h is unbounded);

    L_F = (1/Nh) ||F(z) - h||^2 + lambda * sum ||W||^2,

the first term averaged over the batch (``mse_loss``), the penalty over the Linear layers' weights
only (no biases, no BatchNorm parameters), lambda = 1e-5; Adam lr 1e-3; batch 256 and 30 epochs
(the DataModule's ``batch_size`` and the trainer's ``max_epochs``). E and D_enc are frozen: the
targets are stage 3's cache (``datamodules.latents.LatentDataModule``, batches ``{"z", "h"}``).

Logged: ``train/loss`` (L_F, step values and the exact epoch mean); ``{train,val,test}/mse`` and
``{train,val,test}/r2`` with R^2 = 1 - MSE / mean_d Var(h_d) (population variances over the
split: sklearn's ``r2_score(..., multioutput="variance_weighted")``), from float64 sums over
every item of every rank (``MappingScores``), the same number on every rank; train values are
those of the epoch's training-mode forward passes. Under DDP each rank's BatchNorm normalises its
own batch; evaluation epochs start from rank zero's running statistics (``broadcast_buffers``).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import Metric

from callbacks.global_log import log_global
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.manual_ddp import broadcast_buffers
from lightning_modules.components.mlp import MLP

__all__ = ["ISTRCMapping", "LatentMapping", "MappingScores", "linear_weight_penalty"]

STAGES = ("train", "val", "test")
HIDDEN_LAYERS = 4  # PAPER: five FC layers, i.e. four hidden ones and the output


class LatentMapping(MLP):
    """F: [Linear -> BatchNorm1d -> tanh] x 4, then Linear (five FC layers).

    Args:
        in_features: D, the size of z (128; 32 at test scale).
        out_features: Nh, the size of h (64; 16 at test scale).
        width: Width of the four hidden layers (512; 128 at test scale).
    """

    def __init__(self, in_features: int = 128, out_features: int = 64, width: int = 512) -> None:
        super().__init__(
            in_features,
            (width,) * HIDDEN_LAYERS,
            out_features,
            act_layer=nn.Tanh,
            norm_layer=nn.BatchNorm1d,
        )


def linear_weight_penalty(module: nn.Module) -> Tensor:
    """sum ||W||^2 over the weights of every ``nn.Linear`` in ``module`` (no biases, no norms)."""
    return sum(m.weight.square().sum() for m in module.modules() if isinstance(m, nn.Linear))


class MappingScores(Metric):
    """MSE and R^2 = 1 - MSE / mean_d Var(h_d) over every item seen, exact under DDP.

    States (float64, summed over ranks): the squared error, per-dimension sums of h and h^2, and
    the item count; ``compute`` returns ``(mse, r2)`` as float64 (NaN before any item).

    Args:
        num_outputs: Nh, the width of h.
    """

    full_state_update = False

    def __init__(self, num_outputs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        zeros = torch.zeros(num_outputs, dtype=torch.float64)
        self.add_state("squared_error", zeros.sum(), dist_reduce_fx="sum")
        self.add_state("target_sum", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("target_square_sum", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("count", zeros.sum(), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.shape != target.shape or target.ndim != 2:
            raise ValueError(f"preds and target must be (N, Nh), got {preds.shape}, {target.shape}")
        preds, target = preds.detach().double(), target.detach().double()
        self.squared_error += (preds - target).square().sum()
        self.target_sum += target.sum(0)
        self.target_square_sum += target.square().sum(0)
        self.count += target.shape[0]

    def compute(self) -> tuple[Tensor, Tensor]:
        elements = self.count * self.target_sum.numel()
        mse = self.squared_error / elements
        variance = self.target_square_sum / self.count - (self.target_sum / self.count).square()
        return mse, 1 - mse / variance.mean()


class ISTRCMapping(LightningModule):
    """Trains F on cached (z, h) pairs.

    Args:
        latent_dim: D, the size of z (128; the test scale's encoder: 32).
        code_size: Nh, the size of the BEGAN bottleneck h (64; 16 at test scale).
        width: Width of F's four hidden layers (512; 128 at test scale).
        l2_weight: lambda of the weight penalty (1e-5).
        lr: Adam learning rate (1e-3).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        code_size: int = 64,
        width: int = 512,
        l2_weight: float = 1e-5,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if l2_weight < 0 or lr <= 0:
            raise ValueError(f"need l2_weight >= 0 and lr > 0, got {l2_weight}, {lr}")
        self.mapping = LatentMapping(latent_dim, code_size, width)
        # one MappingScores per stage: train_scores, val_scores, test_scores
        for stage in STAGES:
            setattr(self, f"{stage}_scores", MappingScores(code_size))
        self.means = EpochMeans(["train/loss"])

    def forward(self, z: Tensor) -> Tensor:
        """F(z): (B, D) -> predicted codes (B, Nh), decodable by the BEGAN's D_dec."""
        return self.mapping(z)

    def loss(self, predicted: Tensor, h: Tensor) -> Tensor:
        """L_F = mean over the batch of (1/Nh) ||F(z) - h||^2, plus lambda sum ||W||^2."""
        penalty = linear_weight_penalty(self.mapping)
        return F.mse_loss(predicted, h) + self.hparams.l2_weight * penalty

    def setup(self, stage: str) -> None:
        """D and Nh must be those of the cache."""
        hp = self.hparams
        check_datamodule(self, {"latent_dim": hp.latent_dim, "code_size": hp.code_size})

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        predicted = self(batch["z"])
        loss = self.loss(predicted, batch["h"])
        self.train_scores.update(predicted, batch["h"])
        self.means.log(
            self, {"train/loss": loss}, batch_size=len(predicted), on_step=True, on_epoch=True
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.val_scores.update(self(batch["z"]), batch["h"])

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.test_scores.update(self(batch["z"]), batch["h"])

    def on_train_epoch_end(self) -> None:
        self._report("train")

    def on_validation_epoch_start(self) -> None:
        broadcast_buffers(self)  # every rank evaluates rank zero's BatchNorm statistics

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_start(self) -> None:
        broadcast_buffers(self)

    def on_test_epoch_end(self) -> None:
        self._report("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.mapping.parameters(), lr=self.hparams.lr)

    def _report(self, stage: str) -> None:
        """Log ``{stage}/mse`` and ``{stage}/r2`` over all ranks' items (every rank calls it)."""
        scores = getattr(self, f"{stage}_scores")
        mse, r2 = scores.compute()  # states summed over the ranks
        scores.reset()
        log_global(self, {f"{stage}/mse": mse, f"{stage}/r2": r2})
