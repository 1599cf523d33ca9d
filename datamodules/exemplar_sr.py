"""CelebA exemplar sets for multiple-exemplar face hallucination (PWAVE, thesis ch. 6; spec
hallucination.md section 2), from the official aligned release or its exemplar twin
(``datamodules.synthetic.exemplar_faces``), both read by ``datamodules.formats.celeba``.

Per split of the official partition, identities with fewer than ``min_images`` images in that
split are dropped (the counts are logged and kept in ``identity_counts``). Every kept image is a
target once per epoch: its 128 x 128 crop (rows 45-172, columns 25-152) is ``image_hr``, its
bicubic antialiased downsampling to 16 px (x8) or 8 px (x16) is ``image_lr``, and m other images
of the same identity, drawn without replacement (with replacement only when fewer than m remain),
are its ``exemplars``; the target is never among them. Every draw of an item comes from a generator
seeded by ``(seed, epoch, index)`` (``datamodules.pairs.item_generator``): validation and test
items use epoch 0, so their exemplars are fixed, while training keys carry the epoch
(``ExemplarCountSampler``), so exemplars are drawn afresh each epoch, in every worker and on every
rank alike.

Batches (``collate_exemplars``), images in [-1, 1]:

- ``image_lr`` (B, 3, h, h), ``image_hr`` (B, 3, 128, 128), ``exemplars`` (B, m, 3, 128, 128);
- ``exemplar_index`` long (B, m) positions in the split, ``exemplar_ids`` B lists of m file names;
- ``identity`` long (B,), ``attributes`` float (B, 40) in {0, 1}, ``image_id`` list of file names,
  ``index`` long (B,) position in the split;
- with the twin's sidecar only: ``regions`` long (B, R, 4) the target's detail-region boxes
  ``(top, left, height, width)`` in crop pixels, ``exemplar_regions`` long (B, m, R, 4) and
  ``exemplar_occluded`` bool (B, m, R).

m is the same for every item of a batch: ``num_exemplars`` on validation and test, and in
training either that (``train_m="fixed"``) or, with ``train_m="uniform1to5"``, drawn per batch
uniformly from 1..5 by the training sampler, which tags each key with its batch's m. Items of a
batch therefore stack without padding, and m varies only between batches.

Exemplar occlusion (twin only, spec section 9): with probability ``occlusion_p`` per exemplar and
region the region becomes ``0.3 * itself + noise``, a zero-mean noise texture within +-0.2 (in
[0, 1] units, clamped); ``min_clean`` keeps at least that many exemplars clean per region. Targets
are never occluded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence, Sized
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from datamodules.celeba import CROP_BOXES, CelebAFaces, check_image_files
from datamodules.formats.celeba import ATTRIBUTE_NAMES, how_to_get, read_celeba
from datamodules.formats.errors import DatasetNotFoundError, SettingError
from datamodules.formats.exemplar_regions import SIDECAR_FILE, read_region_boxes
from datamodules.pairs import EpochSampler, item_generator
from datamodules.paths import make_data_command, resolve_root
from datamodules.samplers import pick_within
from datamodules.split_loaders import SplitDataModule
from datamodules.synthetic.exemplar_faces import ensure_exemplar_faces

HR_SIZE = 128
OCCLUDER_BASE = 0.3  # the occluder keeps 0.3 of the region
OCCLUDER_NOISE = 0.2  # plus zero-mean noise within +-0.2
TRAIN_COUNTS = {"uniform1to5": (1, 2, 3, 4, 5)}  # m drawn per training batch
_CODES = {"train": 0, "val": 1, "test": 2}
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
    ) -> None:
        if occlusion_p > 0 and regions is None:
            raise ValueError("occlusion needs the detail-region boxes of the exemplar twin")
        self.faces, self.low_size, self.num_exemplars, self.seed = (
            faces,
            low_size,
            num_exemplars,
            seed,
        )
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
        """float (3, 128, 128) in [0, 1]: the crop of image ``index``."""
        return self.faces.read_crop(index).float() / 255

    def __getitem__(self, key: Key) -> dict[str, Any]:
        epoch, index, m = key if isinstance(key, tuple) else (0, key, self.num_exemplars)
        generator = item_generator(self.seed, epoch, index)
        picks = self.exemplar_positions(index, m, generator)
        hr = self.image(index)
        exemplars = torch.stack([self.image(j) for j in picks.tolist()])
        item = {
            "image_lr": _signed(downsample(hr, self.low_size)),
            "image_hr": _signed(hr),
            "exemplar_index": picks,
            "exemplar_ids": [self.faces.names[j] for j in picks.tolist()],
            "identity": self.faces.identities[index],
            "attributes": self.faces.attributes[index].float(),
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
        item["exemplars"] = _signed(exemplars)
        return item

    def exemplars_by_attribute(
        self, index: int, attribute: str, value: bool, m: int, seed: int = 0
    ) -> dict[str, Any]:
        """An editing exemplar set for target ``index``: m images with ``attribute == value`` of one
        other identity, drawn by ``seed`` (e.g. opposite ``Male`` or ``Eyeglasses``).

        Returns:
            ``exemplars`` (m, 3, 128, 128) in [-1, 1], ``exemplar_index`` long (m,),
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


class CelebAExemplarDataModule(SplitDataModule):
    """Targets, low-resolution inputs and same-identity exemplars from CelebA or its exemplar twin.

    Args:
        root: CelebA root (``img_align_celeba/`` and the tables); None resolves
            ``$LATENTLAB_DATA/celeba`` else ``data/celeba``.
        scale: 8 (16 px inputs) or 16 (8 px inputs).
        num_exemplars: m on validation and test, and in training with ``train_m="fixed"``
            (3: Fig. 6.6's W has three exemplars).
        train_m: ``"fixed"`` or ``"uniform1to5"`` (m drawn per training batch, spec H6).
        min_images: Identities with fewer images in a split are dropped from it (paper: 5).
        batch_size: Training batch size (paper: N = 8).
        eval_batch_size: Validation / test batch size; None takes ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: Seed of every draw (exemplars, occluders, training order, m) and of the twin.
        occlusion_p: Probability of occluding one (exemplar, region); twin only.
        min_clean: Exemplars kept clean per region under occlusion.
        synthetic: When set (``"tiny"``, ``"small"``), ``prepare_data`` writes the exemplar twin
            of that preset at ``root`` unless an up-to-date one (or other data) is there.
    """

    collate_fn = staticmethod(collate_exemplars)
    normalize = "signed"  # every image in [-1, 1]

    def __init__(
        self,
        root: str | None = None,
        scale: Literal[8, 16] = 8,
        num_exemplars: int = 3,
        train_m: Literal["fixed", "uniform1to5"] = "fixed",
        min_images: int = 5,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        seed: int = 0,
        occlusion_p: float = 0.0,
        min_clean: int = 0,
        synthetic: Literal["tiny", "small"] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if scale not in (8, 16):
            raise ValueError(f"scale must be 8 or 16, got {scale}")
        if train_m not in ("fixed", *TRAIN_COUNTS):
            raise ValueError(
                f"train_m must be 'fixed' or one of {list(TRAIN_COUNTS)}, got {train_m!r}"
            )
        if num_exemplars < 1 or min_images < 2 or min_clean < 0:
            raise ValueError(
                "need num_exemplars >= 1, min_images >= 2 (a target and an exemplar) and "
                f"min_clean >= 0, got {num_exemplars}, {min_images}, {min_clean}"
            )
        if not 0.0 <= occlusion_p <= 1.0:
            raise ValueError(f"occlusion_p must be in [0, 1], got {occlusion_p}")
        self.splits: dict[str, ExemplarFaces] = {}
        self.identity_counts: dict[str, dict[str, int]] = {}

    @property
    def root(self) -> Path:
        """The resolved data root."""
        return resolve_root(self.hparams.root, "celeba")

    @property
    def low_size(self) -> int:
        """Side of ``image_lr``: 128 // scale."""
        return HR_SIZE // self.hparams.scale

    def prepare_data(self) -> None:
        """With ``synthetic`` set: write the exemplar twin unless it (or other data) is there."""
        ensure_exemplar_faces(self.root, self.hparams.synthetic, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        """Read and cross-check the tables and the images, filter identities, build the splits."""
        if self.splits:
            return
        hp = self.hparams
        index = _read_index(self.root)
        check_image_files(index)
        regions = self._regions(index.names)
        for split, code in _CODES.items():
            rows = self._kept_rows(split, index.identity, torch.nonzero(index.partition == code))
            faces = CelebAFaces(
                index, rows, list(range(len(ATTRIBUTE_NAMES))), _unit, CROP_BOXES["face128"]
            )
            self.splits[split] = ExemplarFaces(
                faces,
                self.low_size,
                hp.num_exemplars,
                hp.seed,
                None if regions is None else regions[rows],
                hp.occlusion_p,
                hp.min_clean,
            )

    def train_dataloader(self) -> DataLoader:
        """Shuffled targets; m per batch as ``train_m`` says."""
        hp = self.hparams
        counts = TRAIN_COUNTS.get(hp.train_m, (hp.num_exemplars,))
        sampler = ExemplarCountSampler(self.splits["train"], hp.batch_size, counts, hp.seed)
        return self._loader("train", sampler=sampler)

    def exemplars_by_attribute(
        self, split: str, index: int, attribute: str, value: bool, m: int, seed: int = 0
    ) -> dict[str, Any]:
        """``ExemplarFaces.exemplars_by_attribute`` on ``split`` (needs ``setup``)."""
        return self.splits[split].exemplars_by_attribute(index, attribute, value, m, seed)

    def _regions(self, names: list[str]) -> torch.Tensor | None:
        """The sidecar's boxes (N, R, 4) in table order, None without a sidecar (then no
        occlusion can be asked for)."""
        sidecar = self.root / SIDECAR_FILE
        if sidecar.exists():
            return read_region_boxes(sidecar, names)
        if self.hparams.occlusion_p > 0:
            raise SettingError(
                f"--data.init_args.occlusion_p={self.hparams.occlusion_p} occludes the detail "
                f"regions listed in {sidecar}, which does not exist: only the exemplar twin has "
                f"it (`{make_data_command('synthetic-exemplar-faces', OUT=self.root)}` or "
                "--data.init_args.synthetic=small); set --data.init_args.occlusion_p=0 for real "
                "CelebA"
            )
        return None

    def _kept_rows(self, split: str, identity: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` (K, 1) of one split, without identities that have fewer than ``min_images``
        images there; logs and records the counts."""
        rows = rows.flatten()
        ids, counts = identity[rows].unique(return_counts=True)
        kept_ids = ids[counts >= self.hparams.min_images]
        kept = rows[torch.isin(identity[rows], kept_ids)]
        self.identity_counts[split] = {
            "identities": len(kept_ids),
            "images": len(kept),
            "dropped_identities": len(ids) - len(kept_ids),
            "dropped_images": len(rows) - len(kept),
        }
        logging.getLogger(__name__).info(
            "%s: %d identities with >= %d images kept (%d images); %d identities dropped "
            "(%d images)",
            split,
            len(kept_ids),
            self.hparams.min_images,
            len(kept),
            len(ids) - len(kept_ids),
            len(rows) - len(kept),
        )
        if len(kept) == 0:
            raise SettingError(
                f"no identity of the {split} split has {self.hparams.min_images} or more images: "
                f"lower --data.init_args.min_images (at least 2)"
            )
        return kept


def _read_index(root: Path):
    """``read_celeba(root)``; a missing dataset also names the exemplar twin."""
    try:
        return read_celeba(root)
    except DatasetNotFoundError as err:
        twin = (
            f"\nFor exemplar-set work, the exemplar twin (fine identity detail and its region "
            f"sidecar) is written by `{make_data_command('synthetic-exemplar-faces', OUT=root)}` "
            "(or run with `--data.init_args.synthetic=small`)."
        )
        raise DatasetNotFoundError(
            "CelebA", err.root, err.missing, how_to_get(root) + twin
        ) from None


def _unit(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255


def _signed(image: torch.Tensor) -> torch.Tensor:
    return image * 2 - 1
