"""Evaluation data split across DDP ranks, each item exactly once: rank r gets r, r + W, r + 2W, ...

Under DDP, Lightning replaces a loader's sampler by a ``DistributedSampler`` that pads the last
round with repeated items, so a test metric would count some items twice. The evaluation loaders
of every DataModule (val, test, predict) instead take ``eval_sampler(dataset, split)``: ``None``
in a single process (the loader is then exactly the plain sequential one), else an
``UnrepeatedDistributedSampler``, which Lightning leaves in place because it subclasses
``torch.utils.data.DistributedSampler``. Per-rank counts may differ by one; every rank gets at
least one item.

Which rank of how many this process is comes from ``torch.distributed`` once its process group is
initialized (Lightning initializes it before it asks for dataloaders), else rank 0 of 1;
``num_replicas`` and ``rank`` given explicitly win (tests).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler

from datamodules.formats.errors import SettingError


def replicas_and_rank(num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """``(world size, rank)``: the given values, else the process group's, else ``(1, 0)``."""
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} of {num_replicas} replicas: need 0 <= rank < replicas")
    return num_replicas, rank


class UnrepeatedDistributedSampler(DistributedSampler):
    """Rank r of W yields the indices r, r + W, r + 2W, ... < len(dataset): no padding, no shuffle.

    Over all ranks every index comes exactly once; each rank keeps file order.

    Args:
        dataset: Any sized dataset.
        num_replicas: W; default from ``torch.distributed`` (1 when not initialized).
        rank: r; default from ``torch.distributed`` (0 when not initialized).
        split: Name of the split, for the error message.

    Raises:
        SettingError: The dataset has fewer items than ranks, but some (a rank would evaluate
            nothing while the others evaluate; an empty split stays empty on every rank).
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        split: str = "evaluation",
    ) -> None:
        num_replicas, rank = replicas_and_rank(num_replicas, rank)
        if 0 < len(dataset) < num_replicas:
            raise SettingError(
                f"the {split} split has {len(dataset)} items but {num_replicas} processes "
                f"evaluate it, and every process needs at least one: run on at most "
                f"{len(dataset)}, e.g. --trainer.devices={len(dataset)} --trainer.num_nodes=1"
            )
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def eval_sampler(
    dataset: Sized, split: str, num_replicas: int | None = None, rank: int | None = None
) -> UnrepeatedDistributedSampler | None:
    """The sampler of an evaluation loader: ``None`` (sequential) in one process, else unrepeated.

    Pass it as ``DataLoader(dataset, sampler=eval_sampler(dataset, "val"), ...)`` without
    ``shuffle``.
    """
    num_replicas, rank = replicas_and_rank(num_replicas, rank)
    if num_replicas == 1:
        return None
    return UnrepeatedDistributedSampler(dataset, num_replicas, rank, split)
