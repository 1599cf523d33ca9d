"""Training images occluded at random, as OLR's pairs occlude them (occlusion augmentation).

``OccludedImages`` wraps a map-style dataset of dicts with ``"image"``: with probability ``rate``
an item's image gets one rectangle of ``datamodules.occlusion`` (sides 33-66% of the image's by
default, filled with ``fill``), every other key is the base item's. Its keys are ``(epoch, index)``
tuples from ``datamodules.pairs.EpochSampler`` (or plain indices, epoch 0), and every draw comes
from a generator seeded by ``(seed, epoch, index)``: an item is a pure function of its key, the
same in every worker and on every DDP rank, drawn afresh each epoch.

OLR's teacher C sees the pairs' occluded images when it makes the Siamese targets. Trained on
clean images only, a small C answers a black rectangle with near-constant probabilities for many
labels, so those targets carry nothing to learn; trained with this augmentation, its probability
on an occluded image says whether the label is still visible.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from datamodules.occlusion import MAX_FRACTION, MIN_FRACTION, check_fractions, occlude
from datamodules.pairs import PairKey, item_generator

__all__ = ["OccludedImages"]


class OccludedImages(Dataset):
    """The items of ``base``, each image occluded with probability ``rate``.

    Args:
        base: Map-style dataset of dicts with ``"image"`` (float (C, H, W)).
        rate: Probability that an item's image is occluded, in [0, 1].
        seed: Base seed of the draws.
        min_fraction: Smallest occlusion side, as a fraction of the image side.
        max_fraction: Largest occlusion side, as a fraction of the image side.
        fill: Value of the occluded pixels (0 = black for [0, 1] images).

    Items also carry ``occluded`` (bool) and ``box`` (long (4,) ``(top, left, height, width)``,
    all zeros when not occluded).
    """

    def __init__(
        self,
        base: Dataset,
        rate: float,
        seed: int = 0,
        min_fraction: float = MIN_FRACTION,
        max_fraction: float = MAX_FRACTION,
        fill: float = 0.0,
    ) -> None:
        check_fractions(min_fraction, max_fraction)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the occlusion rate must be in [0, 1], got {rate}")
        self.base, self.rate, self.seed = base, rate, seed
        self.min_fraction, self.max_fraction, self.fill = min_fraction, max_fraction, fill

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: PairKey) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = dict(self.base[int(index)])
        generator = item_generator(self.seed, epoch, int(index))
        occluded = bool(torch.rand((), generator=generator) < self.rate)
        box = torch.zeros(4, dtype=torch.long)
        if occluded:
            item["image"], box = occlude(
                item["image"], generator, self.min_fraction, self.max_fraction, self.fill
            )
        item["occluded"], item["box"] = torch.tensor(occluded), box
        return item
