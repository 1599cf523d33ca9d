"""Gather per-item values of evaluation from every rank, whatever each rank's item count.

Evaluation loaders shard without repeats (rank r of W holds items r, r + W, r + 2W, ... of the
dataset), so ranks hold different numbers of items (at most one apart) and equal-shape collectives
(``LightningModule.all_gather``) do not apply. ``gather_rows`` pads tensors to the longest share
and sends the sizes; ``gather_items`` pickles Python objects. Both return the values of all ranks,
the same on every rank, in a defined ``order``:

- ``"interleaved"`` (default): item k of rank r goes to position k * W + r, which is the dataset
  order of that sharding, so the result equals what one process sees; the sizes must be those of
  the sharding (else a ``ValueError``: the loader repeats or drops items);
- ``"rank"``: rank 0's items, then rank 1's, ...

Every rank must call them at the same point (never inside ``if trainer.is_global_zero``).
Without an initialized process group they return the input unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Order", "gather_items", "gather_rows", "interleaved_positions"]

Order = Literal["interleaved", "rank"]
T = TypeVar("T")


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def interleaved_positions(sizes: Sequence[int]) -> Tensor:
    """Dataset position of every gathered row (rank-major) under strided sharding.

    Rank r's row k is item k * W + r. Raises ``ValueError`` unless ``sizes`` are the shares of
    ``sum(sizes)`` items dealt round-robin (rank r holds ``ceil((N - r) / W)``).
    """
    world, total = len(sizes), sum(sizes)
    expected = [(total - r + world - 1) // world for r in range(world)]
    if list(sizes) != expected:
        raise ValueError(
            f"per-rank item counts {list(sizes)} are not a strided sharding of {total} items "
            f"({expected}): the evaluation loader repeats or drops items; use the DataModule's "
            "loaders (unrepeated distributed sampler)"
        )
    return torch.cat([torch.arange(n) * world + r for r, n in enumerate(sizes)])


def _merge(parts: list[Any], sizes: list[int], order: Order) -> Any:
    """Concatenate per-rank ``parts`` (tensors or lists) in ``order``."""
    if order not in ("interleaved", "rank"):
        raise ValueError(f"order is 'interleaved' or 'rank', got {order!r}")
    tensors = isinstance(parts[0], Tensor)
    joined = torch.cat(parts) if tensors else [x for part in parts for x in part]
    if order == "rank":
        return joined
    where = interleaved_positions(sizes)
    if tensors:
        result = torch.empty_like(joined)
        result[where] = joined
        return result
    result = [None] * len(joined)
    for position, item in zip(where.tolist(), joined, strict=True):
        result[position] = item
    return result


def gather_rows(rows: Tensor, order: Order = "interleaved") -> Tensor:
    """All ranks' ``rows`` (n_r, ...) as one (sum n_r, ...) tensor, on the input's device.

    The trailing shape and the dtype must agree across ranks. Gathered on the GPU under NCCL,
    on the CPU otherwise.
    """
    world = _world_size()
    if world == 1:
        return rows
    device = torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")
    local = rows.detach().to(device)
    if local.dtype == torch.bool:  # gloo has no boolean collectives
        local = local.to(torch.uint8)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(local)], device=device))
    counts = [int(size) for size in sizes]
    padded = local.new_zeros(max(counts), *local.shape[1:])
    padded[: len(local)] = local
    buffers = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(buffers, padded)
    parts = [buffer[:n] for buffer, n in zip(buffers, counts, strict=True)]
    return _merge(parts, counts, order).to(rows.device, rows.dtype)


def gather_items(items: Sequence[T], order: Order = "interleaved") -> list[T]:
    """All ranks' ``items`` (picklable objects) as one list, in ``order``."""
    world = _world_size()
    if world == 1:
        return list(items)
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, list(items))
    return _merge(parts, [len(p) for p in parts], order)


def _nccl() -> bool:
    return dist.get_backend() == "nccl"
