"""Batches taken in turn from several sources: one loader over a ``ConcatDataset`` of them.

When no dataset carries every label (the disentangled AAE's identity, expression and style
sources), each batch comes from one source and the sources take turns: batch t of an epoch is
source ``t % S``'s next batch. ``RoundRobinBatches`` does it at the index level, so one
``DataLoader(ConcatDataset(sources), sampler=..., batch_size=..., drop_last=True)`` serves them
(each batch's items share one source, so their dicts collate). ``RandomBatches`` is the plain
source: uniform random batches without repeats within a step.

Both are ``datamodules.samplers.WholeBatchSampler`` (so Lightning leaves them in place). Every
source draws with ``torch.Generator().manual_seed(seed + epoch)``, the same on every rank, and
rank r keeps its own slice of each step's draw: the ranks' batches are disjoint and every rank
yields the same number of batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch

from datamodules.samplers import WholeBatchSampler
from datamodules.sharding import replicas_and_rank

__all__ = ["BatchSource", "RandomBatches", "RoundRobinBatches"]


class BatchSource(Protocol):
    """A sampler of whole batches (``datamodules.samplers.ClassSetSampler`` is one)."""

    batch_size: int
    num_batches: int

    def batches(self) -> Iterator[list[int]]: ...

    def set_epoch(self, epoch: int) -> None: ...


class RandomBatches(WholeBatchSampler):
    """Uniform random batches of ``batch_size`` distinct indices of ``range(size)`` per rank.

    Each step draws ``W * batch_size`` indices without repeats (a walk through a fresh
    permutation, renewed when it runs out) and rank r keeps the r-th slice.

    Args:
        size: Number of items.
        batch_size: Items per batch on each rank.
        num_batches: Batches per epoch on each rank; default ``size // (W * batch_size)``, >= 1.
        seed: Base seed.
        num_replicas: W; default from ``torch.distributed``.
        rank: r; default from ``torch.distributed``.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        num_replicas, rank = replicas_and_rank(num_replicas, rank)
        if batch_size < 1 or num_replicas * batch_size > size:
            raise ValueError(
                f"batch_size {batch_size} on {num_replicas} rank(s) needs at least "
                f"{num_replicas * batch_size} items, the source has {size}"
            )
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.size, self.batch_size = size, batch_size
        step = num_replicas * batch_size
        self.num_batches = num_batches if num_batches is not None else max(size // step, 1)
        self._set_length()

    def batches(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        step, order, position = self.num_replicas * self.batch_size, torch.empty(0), 0
        for _ in range(self.num_batches):
            if position + step > len(order):
                order, position = torch.randperm(self.size, generator=generator), 0
            draw = order[position : position + step]
            position += step
            yield draw[self.rank * self.batch_size : (self.rank + 1) * self.batch_size].tolist()


class RoundRobinBatches(WholeBatchSampler):
    """The batches of ``sources`` in turn, as indices into ``ConcatDataset`` of their datasets.

    Batch t of an epoch is the next batch of source ``t % S``, shifted by that source's offset
    (the summed lengths of the datasets before it). An epoch has ``S * rounds`` batches, rounds
    being the sources' common ``num_batches`` (build them with the same number).

    Args:
        sources: The per-source batch samplers, in turn order, all with the same ``batch_size``
            and ``num_batches``.
        offsets: Start of each source's dataset in the ``ConcatDataset``.
    """

    def __init__(self, sources: Sequence[BatchSource], offsets: Sequence[int]) -> None:
        if not sources or len(sources) != len(offsets):
            raise ValueError(
                f"need one offset per source, got {len(sources)} sources, {len(offsets)} offsets"
            )
        for name in ("batch_size", "num_batches"):
            values = {getattr(s, name) for s in sources}
            if len(values) != 1:
                raise ValueError(f"every source must have the same {name}, got {sorted(values)}")
        first = sources[0]
        num_replicas = getattr(first, "num_replicas", 1)
        rank = getattr(first, "rank", 0)
        super().__init__(range(1), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.sources, self.offsets = list(sources), list(offsets)
        self.batch_size = first.batch_size
        self.rounds = first.num_batches
        self.num_batches = self.rounds * len(self.sources)
        self._set_length()

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for source in self.sources:
            source.set_epoch(epoch)

    def batches(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch, sources in turn."""
        streams = [source.batches() for source in self.sources]
        for _ in range(self.rounds):
            for offset, stream in zip(self.offsets, streams, strict=True):
                yield [offset + index for index in next(stream)]
