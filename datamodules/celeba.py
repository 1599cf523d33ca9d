"""CelebA (aligned 178 x 218 release) as a LightningDataModule: 40 binary attributes, identities.

Reads the official on-disk layout with ``datamodules.formats.celeba.read_celeba`` (strict,
cross-checked tables) and checks at setup that every listed image file exists and is not empty
(a stat, no decode). Splits:

- ``"random"`` (default, as in Le & Lee): a seeded random ``test_fraction`` of the images is the
  test split (or, with ``train_count`` set, all but ``train_count`` images: OLR's 190,000-image
  split by count); ``val_fraction`` of the remaining part is carved out for validation. With
  ``val_fraction=0`` there is no held-out validation part: the validation loader serves the test
  split (the paper's literal protocol, which monitors on test).
- ``"official"``: ``list_eval_partition.txt`` (0 train, 1 val, 2 test); ``test_fraction`` and
  ``val_fraction`` are not used.

Batches: ``image`` float (B, 3, S, S) normalised (ImageNet mean/std, ``"signed"`` [-1, 1] or
``"none"`` [0, 1]), ``attributes`` float (B, L) in {0, 1}, ``identity`` long (B,), ``image_id``
list of file names. ``predict_dataloader`` serves the splits of ``predict_splits`` (default the
test split), in that order, with the evaluation transform (a predicted training split is not
augmented).

Training batches are shuffled images, or with ``identities_per_batch`` set identity-grouped:
P = ``identities_per_batch`` distinct training identities x K = ``images_per_identity`` images
each (``datamodules.samplers.ClassSetSampler``, rows ``[i K, (i + 1) K)`` one identity; under DDP
each rank draws its own P identities), as metric learning with in-batch triplets needs (ISTRC's
FaceNet stand-in: 32 x 4). ``batch_size`` then sizes the evaluation batches only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.formats.celeba import ATTR_FILE, ATTRIBUTE_NAMES, CelebAIndex, read_celeba
from datamodules.formats.errors import FormatError, SettingError
from datamodules.formats.listed_files import check_listed_files
from datamodules.images import FFHQ_IN_CELEBA, NORMALIZATIONS, read_rgb, square_transform
from datamodules.paths import resolve_root
from datamodules.samplers import ClassSetSampler
from datamodules.split_loaders import SplitDataModule

# Crop boxes (top, left, height, width) in the 178 x 218 aligned image.
CROP_BOXES: dict[str, tuple[int, int, int, int] | None] = {
    "none": None,
    "center": (20, 0, 178, 178),  # rows 20-197, all columns (OLR)
    "face128": (45, 25, 128, 128),  # top-left (x=25, y=45) (ISTRC, AAE, hallucination)
    "ffhq": FFHQ_IN_CELEBA,  # 156 x 156 at x=10, y=37: framed like FFHQ images (label transfer)
}


class CelebAFaces(Dataset):
    """One split of CelebA: ``dataset[i]`` is a batch-contract dict for one image.

    Args:
        index: The cross-checked tables.
        rows: Row numbers (into ``index``) of this split.
        columns: Attribute columns kept.
        transform: uint8 (3, H, W) -> float (3, S, S).
        crop: ``(top, left, height, width)`` cut before the transform, or None.
    """

    def __init__(
        self,
        index: CelebAIndex,
        rows: torch.Tensor,
        columns: list[int],
        transform: Callable[[torch.Tensor], torch.Tensor],
        crop: tuple[int, int, int, int] | None,
    ) -> None:
        self.image_dir = index.image_dir
        self.names = [index.names[i] for i in rows.tolist()]
        self.attributes = index.attributes[rows][:, columns]  # uint8 (N, L)
        self.identities = index.identity[rows]  # long (N,)
        self.transform = transform
        self.crop = crop

    def __len__(self) -> int:
        return len(self.names)

    def read_crop(self, i: int) -> torch.Tensor:
        """Image ``i`` decoded and cut to the crop box: uint8 (3, h, w), before the transform."""
        path = self.image_dir / self.names[i]
        image = read_rgb(path)  # uint8 (3, H, W)
        return image if self.crop is None else cut_box(image, self.crop, path)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.transform(self.read_crop(i)),
            "attributes": self.attributes[i].float(),
            "identity": self.identities[i],
            "image_id": self.names[i],
        }

    @cached_property
    def _rows_by_identity(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for i, identity in enumerate(self.identities.tolist()):
            groups.setdefault(identity, []).append(i)
        return groups

    def indices_of_identity(self, identity: int) -> list[int]:
        """Positions in this dataset of the images of ``identity`` (empty when it has none here)."""
        return list(self._rows_by_identity.get(int(identity), []))


class CelebADataModule(SplitDataModule):
    """CelebA attributes (+ identity) from the official aligned release or its synthetic twin.

    Args:
        root: Folder with ``img_align_celeba/`` and the annotation files; None resolves
            ``$LATENTLAB_DATA/celeba`` else ``data/celeba``.
        image_size: Side of the square network input (direct resize, bilinear, antialiased).
        split: ``"random"`` (seeded image-level split) or ``"official"`` (list_eval_partition.txt).
        test_fraction: Fraction of all images in the random test split.
        train_count: When set, the random split keeps exactly this many images outside the test
            split (train + validation; the rest is test) and ``test_fraction`` is not used.
        val_fraction: Fraction of the random train part held out for validation; 0 = none (the
            validation loader then serves the test split).
        seed: Seed of the random split (and of the synthetic twin).
        attributes: Attributes to keep (kept in official order); None keeps all 40.
        drop_attributes: Attributes to remove from the kept ones.
        crop: ``"none"``, ``"center"`` (178 x 178, rows 20-197), ``"face128"`` (128 x 128 at
            x=25, y=45) or ``"ffhq"`` (156 x 156 at x=10, y=37: FFHQ's framing), cut before
            the resize.
        crop_offset: ``(x, y)`` shift in pixels of the crop box.
        normalize: ``"imagenet"`` mean/std, ``"signed"`` ([-1, 1] images: BEGAN's and ISTRC's
            range) or ``"none"`` ([0, 1] images).
        randaugment: RandAugment on the uint8 training images (after the resize).
        randaugment_ops: RandAugment's number of operations N.
        randaugment_magnitude: RandAugment's magnitude M.
        zoom: Training-only random zoom-in by up to ``1 + zoom`` (0 = off; not in the paper).
        batch_size: Images per batch (per evaluation batch with ``identities_per_batch``).
        identities_per_batch: When set, training batches hold this many distinct identities
            (P), ``images_per_identity`` images each; None (default) = shuffled batches.
        images_per_identity: K, images per identity in an identity-grouped batch (an identity
            with fewer training images repeats some, with a warning).
        num_workers: DataLoader worker processes.
        predict_splits: Splits served by ``predict_dataloader``, one loader each in this order
            (``dataloader_idx``); None = the test split only. ISTRC's latent cache predicts
            ``[train, val, test]``.
        synthetic: When set (``"tiny"``, ``"small"``, ``"default"``) and ``root`` has no
            ``list_attr_celeba.txt``, ``prepare_data`` writes the synthetic twin with that preset
            into ``root``'s parent (``root`` must then end in ``celeba``).
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 224,
        split: Literal["official", "random"] = "random",
        test_fraction: float = 0.2,
        train_count: int | None = None,
        val_fraction: float = 0.05,
        seed: int = 0,
        attributes: list[str] | None = None,
        drop_attributes: list[str] | None = None,
        crop: Literal["none", "center", "face128", "ffhq"] = "none",
        crop_offset: tuple[int, int] = (0, 0),
        normalize: Literal["imagenet", "signed", "none"] = "imagenet",
        randaugment: bool = False,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        zoom: float = 0.0,
        batch_size: int = 64,
        identities_per_batch: int | None = None,
        images_per_identity: int = 4,
        num_workers: int = 2,
        predict_splits: list[Literal["train", "val", "test"]] | None = None,
        synthetic: Literal["tiny", "small", "default"] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if identities_per_batch is not None and min(identities_per_batch, images_per_identity) < 1:
            raise ValueError(
                "identities_per_batch and images_per_identity must be positive, got "
                f"{identities_per_batch} and {images_per_identity}"
            )
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if train_count is not None and train_count < 1:
            raise ValueError(f"train_count must be at least 1, got {train_count}")
        if crop not in CROP_BOXES:
            raise ValueError(f"crop must be one of {sorted(CROP_BOXES)}, got {crop!r}")
        if crop == "none" and tuple(crop_offset) != (0, 0):
            raise ValueError(f"crop_offset {tuple(crop_offset)} needs a crop other than 'none'")
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"normalize must be one of {sorted(NORMALIZATIONS)}, got {normalize!r}"
            )
        self._columns = _select_attributes(attributes, drop_attributes or [])
        self.predict_splits = _check_predict_splits(predict_splits)
        self.splits: dict[str, CelebAFaces] = {}
        self._eval_transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def root(self) -> Path:
        """The resolved data root."""
        return resolve_root(self.hparams.root, "celeba")

    @property
    def attribute_names(self) -> list[str]:
        """Names of the kept attributes, official order (available before ``setup``)."""
        return [ATTRIBUTE_NAMES[j] for j in self._columns]

    @property
    def num_attributes(self) -> int:
        """Number of kept attributes."""
        return len(self._columns)

    @property
    def identity_batch_shape(self) -> tuple[int, int] | None:
        """(P identities, K images each) of the identity-grouped training batches; None when
        training batches are shuffled images."""
        hp = self.hparams
        if hp.identities_per_batch is None:
            return None
        return hp.identities_per_batch, hp.images_per_identity

    @property
    def train_attributes(self) -> torch.Tensor:
        """uint8 (N_train, L) labels of the training part (for class weights); needs ``setup``."""
        if "train" not in self.splits:
            raise RuntimeError("CelebADataModule.train_attributes needs setup('fit') first")
        return self.splits["train"].attributes

    def prepare_data(self) -> None:
        """With ``synthetic`` set: write the twin unless an up-to-date one is at ``root``."""
        prepare_twin(self.root, self.hparams.synthetic, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        """Read and cross-check the tables, check every listed image file, build the splits."""
        if self.splits:
            return
        index = read_celeba(self.root)
        check_image_files(index)
        hp = self.hparams
        crop = _crop_box(hp.crop, tuple(hp.crop_offset))
        augment = (hp.randaugment_ops, hp.randaugment_magnitude) if hp.randaugment else None
        train_tf = square_transform(hp.image_size, hp.normalize, augment, hp.zoom)
        eval_tf = self._eval_transform = square_transform(hp.image_size, hp.normalize)
        for name, rows in self._split_rows(index).items():
            tf = train_tf if name == "train" else eval_tf
            self.splits[name] = CelebAFaces(index, rows, self._columns, tf, crop)

    def predict_dataset(self, split: str) -> CelebAFaces:
        """``self.splits[split]``, the training split with the evaluation transform."""
        dataset = self.splits[split]
        if split == "train":
            dataset = copy.copy(dataset)
            dataset.transform = self._eval_transform
        return dataset

    def train_dataloader(self) -> DataLoader:
        """Shuffled training images, or the P x K identity batches of ``identity_batch_shape``."""
        shape = self.identity_batch_shape
        if shape is None:
            return super().train_dataloader()
        train = self.splits["train"]
        sampler = ClassSetSampler(train.identities, *shape, seed=self.hparams.seed)
        return self._loader("train", sampler=sampler, batch_size=sampler.batch_size)

    def _split_rows(self, index: CelebAIndex) -> dict[str, torch.Tensor]:
        hp = self.hparams
        if hp.split == "official":
            return {s: torch.nonzero(index.partition == c).flatten() for s, c in _CODES.items()}
        generator = torch.Generator().manual_seed(hp.seed)
        order = torch.randperm(len(index.names), generator=generator)
        n_test = round(hp.test_fraction * len(order))
        if hp.train_count is not None:
            n_test = len(order) - _check_train_count(hp.train_count, len(order))
        test, rest = order[:n_test], order[n_test:]
        n_val = max(1, round(hp.val_fraction * len(rest))) if hp.val_fraction > 0 else 0
        val = rest[:n_val] if hp.val_fraction > 0 else test
        return {
            "train": rest[n_val:].sort().values,
            "val": val.sort().values,
            "test": test.sort().values,
        }


_CODES = {"train": 0, "val": 1, "test": 2}


def prepare_twin(root: Path, preset: str | None, seed: int) -> None:
    """Write the synthetic CelebA twin (``preset``) at ``root`` unless an up-to-date one is there;
    nothing when ``preset`` is None (real data is never written)."""
    if preset is None:
        return
    from datamodules.synthetic.faces import ensure_twin

    ensure_twin(root, "celeba", preset, seed, present=(root / ATTR_FILE).exists())


def _check_predict_splits(splits: list[str] | None) -> list[str]:
    """The predicted splits (default ``["test"]``); unknown, repeated or no splits -> ValueError."""
    splits = ["test"] if splits is None else list(splits)
    unknown = sorted(set(splits) - set(_CODES))
    if not splits or unknown or len(set(splits)) != len(splits):
        raise ValueError(f"predict_splits takes distinct splits among {list(_CODES)}, got {splits}")
    return splits


def _check_train_count(train_count: int, total: int) -> int:
    """``train_count``, if it leaves at least one of the ``total`` images for the test split."""
    if train_count >= total:
        raise SettingError(
            f"--data.init_args.train_count={train_count} but the dataset has only {total} "
            f"images and the test split needs at least one: set "
            f"--data.init_args.train_count={total - 1} or fewer"
        )
    return train_count


def _select_attributes(keep: list[str] | None, drop: list[str]) -> list[int]:
    """Column indices of the kept attributes, in official order; unknown names -> ValueError."""
    unknown = [n for n in [*(keep or []), *drop] if n not in ATTRIBUTE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown CelebA attribute(s) {unknown}; valid names: {', '.join(ATTRIBUTE_NAMES)}"
        )
    wanted = set(ATTRIBUTE_NAMES if keep is None else keep) - set(drop)
    columns = [j for j, n in enumerate(ATTRIBUTE_NAMES) if n in wanted]
    if not columns:
        raise ValueError("no attribute left after `attributes` and `drop_attributes`")
    return columns


def _crop_box(crop: str, offset: tuple[int, int]) -> tuple[int, int, int, int] | None:
    box = CROP_BOXES[crop]
    if box is None:
        return None
    top, left, height, width = box
    return top + offset[1], left + offset[0], height, width


def cut_box(image: torch.Tensor, box: tuple[int, int, int, int], path: Path) -> torch.Tensor:
    """The ``(top, left, height, width)`` box of a (C, H, W) image; a box outside it is refused,
    naming the file."""
    top, left, height, width = box
    _, h, w = image.shape
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise FormatError(
            path,
            f"crop box {width}x{height} at (x={left}, y={top}) falls outside the {w}x{h} image",
        )
    return image[:, top : top + height, left : left + width]


def check_image_files(index: CelebAIndex) -> None:
    """Refuse a listed image that is missing or empty, naming its line of the attribute table."""
    files = ((index.table_line(i), index.image_dir / name) for i, name in enumerate(index.names))
    check_listed_files(files, index.attribute_file)
