"""Item-weighted epoch means of per-batch values, exact under DDP: what a module logs itself.

A module logs a batch mean (a loss, an error rate) once per step; the epoch value must be the
mean over every item of the epoch, on all ranks together, whatever the number of items each rank
held. ``EpochMeans`` keeps one ``WeightedMean`` (a torchmetrics ``Metric``) per key whose states
are the sum of ``value * batch_size`` and the sum of ``batch_size`` (float64), summed over ranks
when Lightning computes the epoch value: the exact item-weighted mean, the same number on every
rank (the checkpoint monitor included).

Not ``self.log(..., sync_dist=True, batch_size=...)``: Lightning 2.6 mean-syncs its integer
batch-size accumulator, which floors ``sum(batch_size) / world_size`` (Lightning issue 21859), so
the epoch mean is inflated whenever the ranks' item counts do not divide evenly, which unrepeated
evaluation sharding produces. Not ``torchmetrics.MeanMetric`` either: its weights are ignored
when NaN checks are disabled, and its other NaN strategies drop NaN values from the mean. Metric
objects are synced by torchmetrics at ``compute`` only: no
per-step collective, so ranks may run different numbers of evaluation batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric

__all__ = ["EpochMeans", "WeightedMean"]


class WeightedMean(Metric):
    """``sum(value * weight) / sum(weight)`` with float64 sum states (summed over ranks)."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        zero = torch.zeros((), dtype=torch.float64)
        self.add_state("total", zero.clone(), dist_reduce_fx="sum")
        self.add_state("weight", zero.clone(), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: float) -> None:
        self.total += value.detach().to(torch.float64).sum() * weight
        self.weight += weight

    def compute(self) -> Tensor:
        return self.total / self.weight


class EpochMeans(nn.ModuleDict):
    """One item-weighted mean per logged key (``"val/loss"``, ...), declared at construction.

    Keep it as an attribute of the LightningModule (Lightning finds logged metrics among the
    module's children); its states are not saved in checkpoints. Non-finite values are kept (a
    NaN loss makes the epoch mean NaN, as it should).

    Args:
        names: Every key the module will log through ``log``.
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__({name: WeightedMean() for name in names})

    def log(
        self,
        module: LightningModule,
        values: Mapping[str, Tensor],
        *,
        batch_size: int,
        **log_kwargs: Any,
    ) -> None:
        """Log each scalar ``values[name]`` (a mean over the batch's ``batch_size`` items).

        The epoch value is the mean over all items of all ranks; with ``on_step=True`` the step
        value is this batch's value on this rank. ``log_kwargs`` go to ``module.log``
        (``prog_bar``, ``on_step``, ``on_epoch``: Lightning's defaults per hook apply, so a
        training step passes ``on_epoch=True`` for an epoch value).
        """
        for name, value in values.items():
            if name not in self:
                raise KeyError(f"EpochMeans: {name!r} was not declared (declared: {sorted(self)})")
            metric = self[name]
            metric(value.detach(), batch_size)  # update, and the batch value for step logs
            module.log(name, metric, batch_size=batch_size, **log_kwargs)
