"""Exemplar sets of one split (PWAVE face hallucination, thesis ch. 6; spec hallucination.md
section 2): a target, its low-resolution input and m other images of the same identity.

Pairing rule: every image of the split is a target once per epoch; its m exemplars are other
images of its identity, drawn without replacement (with replacement only when fewer than m
remain), never the target itself. Every draw of an item (exemplars, occluders) comes from a
generator seeded by ``(seed, epoch, index)`` (``datamodules.pairs.item_generator``), so an item is
a pure function of its key, the same in every worker and on every DDP rank. Keys are plain indices
(epoch 0, ``num_exemplars``: the fixed validation and test sets) or ``(epoch, index, m)`` tuples
from ``ExemplarCountSampler`` (training: drawn afresh each epoch, one m per batch).

Items, images in [-1, 1] (``collate_exemplars`` stacks them; m is the same within a batch):

- ``image_lr`` (3, h, h) the bicubic antialiased downsampling of ``image_hr`` (3, S, S), S = 128
  (the whole crop) or the side of a ``window`` of it;
- ``exemplars`` (m, 3, S, S), ``exemplar_index`` long (m,) positions in the split,
  ``exemplar_ids`` the m file names (a batch keeps B lists), ``exemplar_attributes`` float (m, 40);
- ``identity`` long, ``attributes`` float (40,) in {0, 1}, ``image_id``, ``index`` long;
- with region boxes (the exemplar twin's sidecar) only: ``regions`` long (R, 4) the target's
  detail-region boxes ``(top, left, height, width)`` in pixels of ``image_hr``,
  ``exemplar_regions`` long (m, R, 4) and ``exemplar_occluded`` bool (m, R).

Exemplar occlusion (spec section 9): with probability ``occlusion_p`` per exemplar and region, the
region becomes ``0.3 * itself + noise``, a zero-mean noise texture within +-0.2 (in [0, 1] units,
clamped), and an exemplar with an occluded eye region gets ``Eyeglasses = 1``; ``min_clean`` keeps
at least that many exemplars clean per region. Targets are never occluded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from datamodules.celeba import CelebAFaces
from datamodules.formats.celeba import ATTRIBUTE_NAMES
from datamodules.formats.exemplar_regions import REGION_NAMES
from datamodules.pairs import EpochSampler, item_generator
from datamodules.samplers import pick_within

OCCLUDER_BASE = 0.3  # the occluder keeps 0.3 of the region
OCCLUDER_NOISE = 0.2  # plus zero-mean noise within +-0.2
EYE_REGIONS = [REGION_NAMES.index(n) for n in ("left_eye", "right_eye")]  # hit: Eyeglasses = 1
_EYEGLASSES = ATTRIBUTE_NAMES.index("Eyeglasses")
Key = int | tuple[int, int, int]  # index (epoch 0, num_exemplars), or (epoch, index, m)


def downsample(hr: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic antialiased resize of [0, 1] images (..., 3, H, W) to ``size``, clamped to [0, 1]."""
    bicubic = v2.InterpolationMode.BICUBIC
    return v2.functional.resize(hr, [size, size], interpolation=bicubic, antialias=True).clamp(0, 1)


def occlude_regions(
    exemplars: torch.Tensor,
    boxes: torch.Tensor,
    p: float,
    min_clean: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Occlude detail regions of exemplars at random.

    Args:
        exemplars: float (m, 3, H, W) in [0, 1].
        boxes: long (m, R, 4) ``(top, left, height, width)`` per exemplar and region.
        p: Probability that one (exemplar, region) is occluded.
        min_clean: Exemplars kept clean per region (at most m).
        generator: The item's generator.

    Returns:
        ``(occluded copy, hit)``; ``hit`` bool (m, R) says which (exemplar, region) was occluded.
    """
    m, regions = boxes.shape[:2]
    hit = torch.rand(m, regions, generator=generator) < p
    for r in range(regions):
        excess = min(min_clean, m) - int((~hit[:, r]).sum())
        if excess > 0:  # clear `excess` of the hits in this region, chosen at random
            hits = torch.nonzero(hit[:, r]).flatten()
            hit[hits[torch.randperm(len(hits), generator=generator)[:excess]], r] = False
    out = exemplars.clone()
    for e, r in hit.nonzero().tolist():
        top, left, height, width = boxes[e, r].tolist()
        noise = (torch.rand(1, height, width, generator=generator) * 2 - 1) * OCCLUDER_NOISE
        patch = out[e, :, top : top + height, left : left + width]
        patch.copy_((OCCLUDER_BASE * patch + noise - noise.mean()).clamp(0, 1))
    return out, hit


def collate_exemplars(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the items of one batch (all with the same m); ``exemplar_ids`` stays B lists of m."""
    names = [item["exemplar_ids"] for item in items]
    batch = default_collate([{k: v for k, v in it.items() if k != "exemplar_ids"} for it in items])
    batch["exemplar_ids"] = names
    return batch


class ExemplarFaces(Dataset):
    """One split: ``dataset[key]`` is a target, its low-resolution input and m exemplars.

    Args:
        faces: The split's images (only identities with enough images), read and cropped.
        low_size: Side of ``image_lr`` (16 for x8, 8 for x16).
        num_exemplars: m of a plain integer key.
        seed: Base seed of the draws.
        regions: long (N, R, 4) detail-region boxes of the split's images (the twin's sidecar), or
            None (no region keys, no occlusion).
        occlusion_p: Probability of occluding one (exemplar, region); needs ``regions``.
        min_clean: Exemplars kept clean per region.
        window: ``(top, left, size)``: every image (target and exemplars) is this square of the
            128 x 128 crop, and region boxes are given in its frame (each must lie inside it);
            None: the whole crop.
    """

    def __init__(
        self,
        faces: CelebAFaces,
        low_size: int,
        num_exemplars: int,
        seed: int = 0,
        regions: torch.Tensor | None = None,
        occlusion_p: float = 0.0,
        min_clean: int = 0,
        window: tuple[int, int, int] | None = None,
    ) -> None:
        if occlusion_p > 0 and regions is None:
            raise ValueError("occlusion needs the detail-region boxes of the exemplar twin")
        self.faces, self.low_size, self.num_exemplars, self.seed = (
            faces,
            low_size,
            num_exemplars,
            seed,
        )
        self.window = window
        if window is not None and regions is not None:
            regions = _boxes_in_window(regions, window, faces.names)
        self.regions, self.occlusion_p, self.min_clean = regions, occlusion_p, min_clean

    def __len__(self) -> int:
        return len(self.faces)

    def exemplar_positions(self, index: int, m: int, generator: torch.Generator) -> torch.Tensor:
        """long (m,): positions of m other images of ``index``'s identity (never ``index``)."""
        others = self.faces.indices_of_identity(int(self.faces.identities[index]))
        others = torch.tensor([j for j in others if j != index], dtype=torch.long)
        if len(others) == 0:
            raise ValueError(f"{self.faces.names[index]} is the only image of its identity here")
        return others[pick_within(len(others), m, generator)]

    def image(self, index: int) -> torch.Tensor:
        """float (3, S, S) in [0, 1]: the crop of image ``index`` (S = 128, or the window's)."""
        image = self.faces.read_crop(index).float() / 255
        if self.window is None:
            return image
        top, left, size = self.window
        return image[:, top : top + size, left : left + size]

    def __getitem__(self, key: Key) -> dict[str, Any]:
        epoch, index, m = key if isinstance(key, tuple) else (0, key, self.num_exemplars)
        generator = item_generator(self.seed, epoch, index)
        picks = self.exemplar_positions(index, m, generator)
        hr = self.image(index)
        exemplars = hr.new_empty(0, *hr.shape)  # m = 0: the model without exemplars
        if len(picks):
            exemplars = torch.stack([self.image(j) for j in picks.tolist()])
        item = {
            "image_lr": _signed(downsample(hr, self.low_size)),
            "image_hr": _signed(hr),
            "exemplar_index": picks,
            "exemplar_ids": [self.faces.names[j] for j in picks.tolist()],
            "identity": self.faces.identities[index],
            "attributes": self.faces.attributes[index].float(),
            "exemplar_attributes": self.faces.attributes[picks].float(),
            "image_id": self.faces.names[index],
            "index": torch.tensor(index),
        }
        if self.regions is not None:
            boxes = self.regions[picks]
            exemplars, occluded = occlude_regions(
                exemplars, boxes, self.occlusion_p, self.min_clean, generator
            )
            item.update(regions=self.regions[index], exemplar_regions=boxes)
            item["exemplar_occluded"] = occluded
            item["exemplar_attributes"][occluded[:, EYE_REGIONS].any(1), _EYEGLASSES] = 1.0
        item["exemplars"] = _signed(exemplars)
        return item

    def exemplars_by_attribute(
        self, index: int, attribute: str, value: bool, m: int, seed: int = 0
    ) -> dict[str, Any]:
        """An editing exemplar set for target ``index``: m images with ``attribute == value`` of one
        other identity, drawn by ``seed`` (e.g. opposite ``Male`` or ``Eyeglasses``).

        Returns:
            ``exemplars`` (m, 3, S, S) in [-1, 1], ``exemplar_index`` long (m,),
            ``exemplar_ids`` list, ``identity`` of the exemplars.

        Raises:
            ValueError: An unknown attribute, or no other identity of the split has that value.
        """
        if attribute not in ATTRIBUTE_NAMES:
            raise ValueError(f"unknown CelebA attribute {attribute!r}")
        column = ATTRIBUTE_NAMES.index(attribute)
        faces = self.faces
        match = (faces.attributes[:, column] == int(value)) & (
            faces.identities != faces.identities[index]
        )
        candidates = faces.identities[match].unique()
        if len(candidates) == 0:
            raise ValueError(f"no other identity of this split has {attribute}={int(value)}")
        generator = item_generator(seed, -1, index)
        identity = candidates[torch.randint(len(candidates), (), generator=generator)]
        rows = torch.nonzero(match & (faces.identities == identity)).flatten()
        picks = rows[pick_within(len(rows), m, generator)]
        images = torch.stack([self.image(j) for j in picks.tolist()])
        return {
            "exemplars": _signed(images),
            "exemplar_index": picks,
            "exemplar_ids": [faces.names[j] for j in picks.tolist()],
            "identity": identity,
        }


class ExemplarCountSampler(EpochSampler):
    """Shuffled training keys ``(epoch, index, m)``: ``EpochSampler``'s order and share, with one
    m per batch of ``batch_size`` consecutive keys, drawn from ``counts`` by ``(seed, epoch,
    batch)`` (the same on every rank, so a step has one m everywhere).

    Args:
        dataset: The sized training split.
        batch_size: Items per batch (the loader's ``batch_size``).
        counts: The m to draw from, uniformly.
        seed: Seed of the order and of the m draws.
        num_replicas: W; default from ``torch.distributed``.
        rank: r; default from ``torch.distributed``.
    """

    def __init__(
        self,
        dataset: Sized,
        batch_size: int,
        counts: Sequence[int],
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(dataset, seed=seed, num_replicas=num_replicas, rank=rank)
        self.batch_size, self.counts = batch_size, tuple(counts)

    def count(self, epoch: int, batch: int) -> int:
        """m of batch ``batch`` of ``epoch``."""
        if len(self.counts) == 1:
            return self.counts[0]
        generator = item_generator(self.seed, epoch, -1 - batch)  # apart from the items' streams
        return self.counts[int(torch.randint(len(self.counts), (), generator=generator))]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:  # type: ignore[override]
        for position, (epoch, index) in enumerate(super().__iter__()):
            yield epoch, index, self.count(epoch, position // self.batch_size)


def _boxes_in_window(
    boxes: torch.Tensor, window: tuple[int, int, int], names: list[str]
) -> torch.Tensor:
    """``boxes`` (N, R, 4) moved into the frame of ``window``; a box reaching outside it is an
    error naming its image (a region cut by the window would make its metrics meaningless)."""
    top, left, size = window
    moved = boxes - torch.tensor([top, left, 0, 0], dtype=boxes.dtype)
    inside = (moved[..., 0] >= 0) & (moved[..., 1] >= 0)
    inside &= (moved[..., 0] + moved[..., 2] <= size) & (moved[..., 1] + moved[..., 3] <= size)
    if not bool(inside.all()):
        n, r = (int(i) for i in torch.nonzero(~inside)[0])
        raise ValueError(
            f"detail region {r} {tuple(boxes[n, r].tolist())} (top, left, height, width) of image "
            f"{names[n]} reaches outside the window (top, left, size) = {window}"
        )
    return moved


def _signed(image: torch.Tensor) -> torch.Tensor:
    return image * 2 - 1
