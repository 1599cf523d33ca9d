"""Epoch statistics of OLR's held-out pairs whose states add up over batches and DDP ranks.

- ``ConstantBaseline``: the pair loss of the best constant prediction on the evaluated pairs,
  ``mean_l Var(t_l)`` (each label's mean target, biased variance), from the sums of ``t`` and
  ``t^2`` per label;
- ``EmbeddingMoments``: ``olr.collapse.embedding_moments`` summed over every batch, whose
  ``compute`` gives the per-label explained-variance ratios (``ratios_from_moments``).

Both are torchmetrics ``Metric`` objects with float64 ``sum`` states: torchmetrics all-reduces
them once at ``compute``, so every rank gets the value of the whole set.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_modules.olr.collapse import embedding_moments, ratios_from_moments

__all__ = ["ConstantBaseline", "EmbeddingMoments"]


class ConstantBaseline(Metric):
    """``mean_l (E[t_l^2] - E[t_l]^2)``: the loss of predicting each label's mean target.

    Equal to ``olr.losses.constant_target_loss(t)`` (``mean_target=None``) on the concatenated
    targets ``t`` (N, L) of all batches and ranks.

    Args:
        num_labels: L, the columns of the targets.
    """

    full_state_update = False

    def __init__(self, num_labels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        zeros = torch.zeros(num_labels, dtype=torch.float64)
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sums", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("squares", zeros.clone(), dist_reduce_fx="sum")

    def update(self, target: Tensor) -> None:
        t = target.detach().double()
        self.count += t.shape[0]
        self.sums += t.sum(dim=0)
        self.squares += t.square().sum(dim=0)

    def compute(self) -> Tensor:
        mean = self.sums / self.count
        return (self.squares / self.count - mean.square()).clamp_min(0).mean()


class EmbeddingMoments(Metric):
    """Explained-variance ratios (L, k), descending, of every embedding seen this epoch.

    Args:
        num_labels: L.
        embedding_dim: k.
    """

    full_state_update = False

    def __init__(self, num_labels: int, embedding_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        f64 = {"dtype": torch.float64}
        self.add_state("count", torch.zeros((), **f64), dist_reduce_fx="sum")
        self.add_state("sums", torch.zeros(num_labels, embedding_dim, **f64), dist_reduce_fx="sum")
        shape = (num_labels, embedding_dim, embedding_dim)
        self.add_state("outer_sums", torch.zeros(shape, **f64), dist_reduce_fx="sum")

    def update(self, embeddings: Tensor) -> None:
        count, sums, outer_sums = embedding_moments(embeddings)
        self.count += count
        self.sums += sums
        self.outer_sums += outer_sums

    def compute(self) -> Tensor:
        return ratios_from_moments(self.count, self.sums, self.outer_sums)
