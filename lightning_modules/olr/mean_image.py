"""The mean-image baseline of OLR's reconstructions: the mean train image scored as a prediction.

The decoder is useful only if its reconstructions beat predicting one image for every input. The
baseline is the pixel-wise mean of the train split's reconstruction targets x~ (the images without
their 1-px border), scored against each evaluated target with the suite's SSIM
(``callbacks.image_quality.ssim.ssim``, float64) and the MSE.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from callbacks.image_quality.ssim import ssim
from lightning_modules.olr.decoder import reconstruction_target

__all__ = ["image_sum", "mean_image_scores"]


def image_sum(
    dataset: Dataset,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 64,
    num_workers: int = 0,
) -> tuple[Tensor, int]:
    """Sum (float64, (3, S, S)) and count of x~ over items ``rank, rank + world_size, ...``.

    Items are dicts with ``image`` (3, H, W); S = H - 2. Summing the shards of all ranks gives
    the sum over the whole dataset (each item in exactly one shard).
    """
    if len(dataset) == 0:
        raise ValueError("the mean image needs at least one training image (empty dataset)")
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers)
    total, count = None, 0
    for batch in loader:
        target = reconstruction_target(batch["image"]).double()
        part = target.sum(0)
        total = part if total is None else total + part
        count += target.shape[0]
    if total is None:  # this rank's shard is empty (fewer images than ranks)
        total = torch.zeros_like(reconstruction_target(dataset[0]["image"]), dtype=torch.float64)
    return total, count


def mean_image_scores(mean_image: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """SSIM (N,) and MSE (N,) of ``mean_image`` (3, S, S) against each of ``targets`` (N, 3, S, S).

    Both float64; SSIM is the suite's (``data_range`` 1), MSE the mean over C, H, W.
    """
    if mean_image.shape != targets.shape[1:]:
        raise ValueError(
            f"mean image {tuple(mean_image.shape)} and targets {tuple(targets.shape)} differ "
            "in size; both are reconstruction targets (2 px smaller than the input)"
        )
    preds = mean_image.to(targets).expand_as(targets)
    mse = (preds.double() - targets.double()).square().flatten(1).mean(1)
    return ssim(preds, targets), mse
