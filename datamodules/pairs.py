"""Pairs of independently occluded images (OLR's Siamese training data).

``OcclusionPairs`` wraps a map-style dataset of dicts with ``"image"`` (float (C, H, W)) and
``"attributes"`` (float (L,)), e.g. ``datamodules.celeba.CelebAFaces``. Item ``i`` of epoch ``e``
pairs image ``i`` with a partner drawn uniformly from the whole dataset (independently of ``i``;
possibly ``i`` itself) and gives each side its own rectangle (``datamodules.occlusion``). Every
draw comes from one generator seeded by ``(seed, e, i)``, so an item is a pure function of
``(seed, epoch, index)``: the same on every DDP rank and in every loader worker, persistent or
not, and drawn afresh in every epoch.

How the epoch reaches the workers: the dataset keeps no epoch state. Its keys are either
``(epoch, index)`` tuples or plain indices, which mean epoch 0:

- training: ``EpochSampler`` (a ``DistributedSampler``, so Lightning keeps it under DDP and calls
  its ``set_epoch`` every epoch) yields ``(epoch, index)`` keys. The epoch travels with every key
  into the worker processes, where a ``set_epoch`` on the dataset object would not reach copies
  held by persistent workers;
- evaluation: plain indices, through any sequential or sharded loader (``datamodules.sharding``):
  the same pairs and occlusions every time (a fixed held-out pair set).

Items (``dataset[key]``): ``image_a``, ``image_b`` occluded images (the base's dtype and shape);
``attributes_a``, ``attributes_b`` the base items' labels; ``index_a``, ``index_b`` long, the
positions in the base dataset; ``image_id_a``, ``image_id_b`` the base items' ``image_id`` (only
when the base items have one); ``box_a``, ``box_b`` long (4,) ``(top, left, height, width)`` of
the occluded rectangle; ``epoch`` long. With ``second_view=True`` also ``image_a2`` and ``box_a2``:
image ``a`` again under a third, independent rectangle (drawn after the other two, so the ``a`` and
``b`` sides are the same with or without it), a self pair ``(image_a, image_a2)`` whose two sides
hide different parts of one face. Clean images are not included: the same occluded tensors feed
the frozen classifier and the Siamese network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

from datamodules.occlusion import MAX_FRACTION, MIN_FRACTION, check_fractions, occlude
from datamodules.sharding import replicas_and_rank

PairKey = int | tuple[int, int]  # index, or (epoch, index)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator seeded by a 64-bit digest of ``(seed, epoch, index)`` (distinct triples,
    unrelated streams)."""
    digest = hashlib.blake2b(f"{seed},{epoch},{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class OcclusionPairs(Dataset):
    """Pairs with one random partner per item and a fresh occlusion on each side.

    Args:
        base: Map-style dataset of dicts with ``"image"`` and ``"attributes"``.
        seed: Base seed of the partners and occlusions.
        min_fraction: Smallest occlusion side, as a fraction of the image side.
        max_fraction: Largest occlusion side, as a fraction of the image side.
        fill: Value of the occluded pixels (0 = black for [0, 1] images).
        second_view: Add ``image_a2``, image ``a`` under another independent rectangle.
    """

    def __init__(
        self,
        base: Dataset,
        seed: int = 0,
        min_fraction: float = MIN_FRACTION,
        max_fraction: float = MAX_FRACTION,
        fill: float = 0.0,
        second_view: bool = False,
    ) -> None:
        check_fractions(min_fraction, max_fraction)
        if len(base) == 0:
            raise ValueError("OcclusionPairs needs a non-empty base dataset")
        self.base = base
        self.seed = seed
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction
        self.fill = fill
        self.second_view = second_view

    def __len__(self) -> int:
        return len(self.base)

    def partner(self, index: int, epoch: int = 0) -> int:
        """The partner of item ``index`` in ``epoch`` (the ``index_b`` of that item)."""
        return self._draw_partner(epoch, index)[0]

    def _draw_partner(self, epoch: int, index: int) -> tuple[int, torch.Generator]:
        """The partner of ``(epoch, index)`` and the item's generator, ready for the boxes."""
        generator = item_generator(self.seed, epoch, index)
        return int(torch.randint(len(self.base), (), generator=generator)), generator

    def __getitem__(self, key: PairKey) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        index = int(index)
        if not 0 <= index < len(self.base):
            raise IndexError(f"pair index {index} out of range for {len(self.base)} items")
        partner, generator = self._draw_partner(epoch, index)
        item = {"epoch": torch.tensor(epoch, dtype=torch.long)}
        sides = {"a": (index, self.base[index]), "b": (partner, self.base[partner])}
        for side, (position, source) in sides.items():
            image, box = self._occlude(source["image"], generator)
            item[f"image_{side}"] = image
            item[f"attributes_{side}"] = source["attributes"]
            item[f"index_{side}"] = torch.tensor(position, dtype=torch.long)
            item[f"box_{side}"] = box
            if "image_id" in source:
                item[f"image_id_{side}"] = source["image_id"]
        if self.second_view:
            item["image_a2"], item["box_a2"] = self._occlude(sides["a"][1]["image"], generator)
        return item

    def _occlude(
        self, image: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` with one random rectangle filled, and the rectangle (top, left, h, w)."""
        return occlude(image, generator, self.min_fraction, self.max_fraction, self.fill)


class EpochSampler(DistributedSampler):
    """Shuffled ``(epoch, index)`` keys of one epoch, this rank's share (training pairs).

    ``DistributedSampler`` does the order (a permutation seeded by ``seed + epoch``, the same on
    every rank) and the share (rank r takes every W-th key; the last round is padded with repeated
    keys so every rank yields as many); this class tags every index with the epoch that
    ``set_epoch`` (called by Lightning before each training epoch) selected.

    Args:
        dataset: The sized dataset the keys index (``OcclusionPairs``).
        seed: Seed of the order (use the pairs' seed).
        num_replicas: W; default from ``torch.distributed`` (1 when not initialized).
        rank: r; default from ``torch.distributed`` (0 when not initialized).
    """

    def __init__(
        self,
        dataset: Sized,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        num_replicas, rank = replicas_and_rank(num_replicas, rank)
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())
