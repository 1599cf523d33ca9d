"""The mean train image: the baseline a reconstruction must beat, exact under DDP.

A decoder or autoencoder is useful only if its reconstructions beat predicting one image for
every input. ``train_mean_image`` computes the pixel-wise mean of the training split's targets
once, at setup: each process sums its own shard (items ``rank, rank + world_size, ...``), the
sums and counts are added across processes, so every rank holds the mean of the whole split.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning import LightningModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["image_sum", "train_mean_image"]


def image_sum(
    dataset: Dataset,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 64,
    num_workers: int = 0,
    target: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, int]:
    """Sum (float64, (C, H, W)) and count of ``target(image)`` over items ``rank, rank +
    world_size, ...`` of ``dataset`` (dicts with ``image``); the identity when ``target`` is None.

    Summing the shards of all ranks gives the sum over the whole dataset (each item in exactly
    one shard).
    """
    if len(dataset) == 0:
        raise ValueError("the mean image needs at least one training image (empty dataset)")
    convert = target or (lambda images: images)
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers)
    total, count = None, 0
    for batch in loader:
        images = convert(batch["image"]).double()
        part = images.sum(0)
        total = part if total is None else total + part
        count += images.shape[0]
    if total is None:  # this rank's shard is empty (fewer images than ranks)
        total = torch.zeros_like(convert(dataset[0]["image"][None])[0], dtype=torch.float64)
    return total, count


def train_mean_image(
    module: LightningModule,
    target: Callable[[Tensor], Tensor] | None = None,
    dataset: Dataset | None = None,
) -> tuple[Tensor, int]:
    """The mean (float64) and count of ``target(image)`` over the datamodule's training dataset
    (or ``dataset``), every rank's shard summed across processes (call it on every rank, e.g. in
    ``setup``)."""
    loader = module.trainer.datamodule.train_dataloader()
    trainer = module.trainer
    total, count = image_sum(
        loader.dataset if dataset is None else dataset,
        trainer.global_rank,
        trainer.world_size,
        loader.batch_size or 1,
        loader.num_workers,
        target,
    )
    strategy = trainer.strategy
    total = strategy.reduce(total.to(strategy.root_device), reduce_op="sum")
    count = strategy.reduce(torch.tensor(count, device=strategy.root_device), reduce_op="sum")
    return total / count, int(count)
