"""Log values that are already global (the same on every rank) so they stay exact.

Epoch results computed from synced torchmetrics states or from gathered per-item data (AUROC,
WSOL metrics, tuned thresholds, feature dispersion, studies) are equal on every rank. Logged with
``sync_dist=False`` Lightning warns under DDP; the default ``sync_dist=True`` mean sums the copies
and divides by the world size, which can move the last bit of a float. ``log_global`` logs them
with ``sync_dist=True, reduce_fx="max"``: the maximum of equal numbers is that number, bit for
bit, on every rank, and the checkpoint monitor agrees everywhere. It first checks (one
``all_gather_object``) that the ranks passed equal values, so a value computed from one rank's
share fails loudly instead of being logged as global.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from lightning import LightningModule
from torch import Tensor

from callbacks.gather import gather_items

__all__ = ["log_global"]


def _as_float(value: float | Tensor) -> float:
    return float(value.item() if isinstance(value, Tensor) else value)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def log_global(pl_module: LightningModule, values: Mapping[str, float | Tensor]) -> None:
    """Log every scalar of ``values`` at epoch level; every rank must pass the same values.

    Call it on every rank, at the same point (it runs collectives), from an epoch-end hook.

    Raises:
        ValueError: when ranks passed different keys or values (named in the message).
    """
    mine = {name: _as_float(v) for name, v in values.items()}
    views = gather_items([mine], order="rank")
    names = sorted(set().union(*views))
    differ = [
        name
        for name in names
        if any(name not in v or not _same(v[name], views[0].get(name, math.nan)) for v in views)
    ]
    if differ:
        per_rank = {name: [v.get(name) for v in views] for name in differ}
        raise ValueError(
            f"log_global: the ranks hold different values (rank by rank) {per_rank}; compute "
            "them from gathered data or synced metric states on every rank"
        )
    device = pl_module.device
    for name, value in mine.items():
        tensor = torch.tensor(value, dtype=torch.float64, device=device)
        pl_module.log(name, tensor, sync_dist=True, reduce_fx="max", on_step=False, on_epoch=True)
