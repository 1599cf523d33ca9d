"""The an8Flower-like twin in the 5-fold protocol of VEBI (spec vebi.md sections 2, 4 and 9 b).

Fold ``k``: train on the images of the other four folds; validation and test are both the
held-out fold k (the paper's protocol has no separate validation split, so whatever a run
validates on is its test fold; nothing in VEBI selects a model on it). Run the five folds as five
runs (``--data.init_args.fold=0..4``) and report mean +- std.

Layout (``datamodules.formats.an8flower``): ``<root>/<variant>/{classes.csv, folds.csv, images/,
masks/}``, root default ``$LATENTLAB_DATA/an8flower``. With ``synthetic`` set, ``prepare_data``
writes the twin there when it is missing (``datamodules.synthetic.an8flower``).

Batches: ``image`` (B, 3, S, S) float, normalised as ``normalize`` says (``"none"``: [0, 1]);
``label`` (B,) long; ``mask`` (B, 1, S, S) float in {0, 1}, the discriminative part's visible
pixels; ``image_id`` list of paths relative to the variant folder. With ``part_masks`` set,
validation and test batches also hold ``part_masks`` (B, P, S, S) float in {0, 1}: the visible
pixels of each candidate part (``candidate_parts``: the parts classes.csv names, disc then leaves
in double-12c), re-rendered from the suite twin's manifest (``synthetic.an8flower_parts``), which
VEBI's double-12c checks compare; training batches do not need them. No training augmentation: the
twin's flowers already vary in pose, and a flip or crop would move the mask with them for
nothing. ``image_size`` None keeps the stored side; another side resizes images bilinearly
(antialiased) and masks by nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from datamodules.formats.an8flower import (
    FOLDS_FILE,
    NUM_FOLDS,
    An8FlowerIndex,
    ClassRow,
    read_an8flower,
    read_pair,
)
from datamodules.formats.errors import DatasetNotFoundError, FormatError, SettingError
from datamodules.images import NORMALIZATIONS, Normalization
from datamodules.paths import make_data_command, resolve_root
from datamodules.split_loaders import SplitDataModule
from datamodules.synthetic.an8flower import VARIANTS, ensure_an8flower
from datamodules.synthetic.an8flower_parts import PartRenderer

#: ``synthetic`` presets: (images per class, side). ``small`` is the spec's CPU tier, ``default``
#: its GPU tier; ``tiny`` is for tests.
PRESETS: dict[str, tuple[int, int]] = {"tiny": (10, 64), "small": (60, 64), "default": (300, 128)}


def how_to_get(root: Path, variant: str) -> str:
    """What to run when the variant folder is missing."""
    return (
        f"Write the suite's an8Flower-like twin with "
        f"`{make_data_command('synthetic-an8flower', OUT=root)}` (both variants, 60 images per "
        f"class, 64 px), or run with `--data.init_args.synthetic=small`. The released an8Flower "
        f"is not read: only this layout ({variant}/classes.csv, folds.csv, images/, masks/)."
    )


class An8FlowerImages(Dataset):
    """The images of ``rows`` of ``index`` with their labels and masks; with ``parts`` (a
    renderer and the part names), each candidate part's mask too (rendered once per image: the
    evaluation reads the held-out fold many times)."""

    def __init__(
        self,
        index: An8FlowerIndex,
        rows: list[int],
        image_size: int | None,
        normalize: str,
        parts: tuple[PartRenderer, tuple[str, ...]] | None = None,
    ) -> None:
        self.index, self.rows, self.image_size, self.parts = index, rows, image_size, parts
        self.normalize = v2.Normalize(*NORMALIZATIONS[normalize])
        self._rendered: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        image, mask = read_pair(self.index, row)
        masks = {"mask": mask[None].float()}
        if self.parts is not None:
            masks["part_masks"] = self._part_masks(row, mask)
        size = self.image_size
        if size is not None and tuple(image.shape[1:]) != (size, size):
            image = v2.functional.resize(image, [size, size], antialias=True)
            for key, value in masks.items():
                masks[key] = v2.functional.resize(value, [size, size], v2.InterpolationMode.NEAREST)
        return {
            "image": self.normalize(image.float() / 255),
            "label": int(self.index.labels[row]),
            **masks,
            "image_id": self.index.files[row],
        }

    def _part_masks(self, row: int, mask: torch.Tensor) -> torch.Tensor:
        """float (P, H, W) of the candidate parts, re-rendered; the discriminative part's must be
        the stored mask, else the files are not what the manifest's renderer drew."""
        renderer, names = self.parts
        if row not in self._rendered:
            self._rendered[row] = torch.from_numpy(renderer.masks(self.index.files[row], names))
        parts = self._rendered[row]
        own = names.index(self.index.classes[int(self.index.labels[row])].part)
        if not torch.equal(parts[own], mask):
            raise FormatError(
                self.index.mask_path(row),
                f"differs from the {names[own]} the twin's manifest re-renders: rewrite the twin",
            )
        return parts.float()


class An8FlowerDataModule(SplitDataModule):
    """One fold of an8Flower-like ``single_6c`` or ``double_12c``.

    Args:
        root: Folder holding ``<variant>/``; None resolves ``$LATENTLAB_DATA/an8flower`` else
            ``data/an8flower``.
        variant: ``single_6c`` (6 classes: disc colour) or ``double_12c`` (12: part x colour).
        fold: The held-out fold, 0..4 (validation and test); training reads the other four.
        batch_size: Training batch size (spec: 100, as its MNIST net).
        eval_batch_size: Validation / test batch size; None takes ``batch_size``.
        num_workers: DataLoader worker processes.
        image_size: Side S of the served images; None keeps the stored side.
        normalize: ``"none"`` ([0, 1]), ``"signed"`` ([-1, 1]) or ``"imagenet"``.
        synthetic: ``"tiny"`` (10 images per class, 64 px), ``"small"`` (60, 64 px: the spec's
            CPU tier) or ``"default"`` (300, 128 px: its GPU tier): ``prepare_data`` writes that
            twin at ``root/<variant>`` unless an up-to-date one (or other data) is there.
            None never writes.
        seed: Seed of the twin.
        part_masks: Add ``part_masks`` to validation and test batches (only a twin the suite
            wrote, with the manifest of this renderer, has them; setup raises otherwise).
    """

    def __init__(
        self,
        root: str | None = None,
        variant: Literal["single_6c", "double_12c"] = "single_6c",
        fold: int = 0,
        batch_size: int = 100,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        image_size: int | None = None,
        normalize: Normalization = "none",
        synthetic: Literal["tiny", "small", "default"] | None = None,
        seed: int = 0,
        part_masks: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        if not 0 <= fold < NUM_FOLDS:
            raise ValueError(f"fold must be in 0..{NUM_FOLDS - 1}, got {fold}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"normalize must be one of {sorted(NORMALIZATIONS)}, got {normalize!r}"
            )
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be positive or None, got {image_size}")
        if synthetic is not None and synthetic not in PRESETS:
            raise ValueError(
                f"synthetic must be one of {sorted(PRESETS)} or None, got {synthetic!r}"
            )
        self.splits: dict[str, An8FlowerImages] = {}
        self._index: An8FlowerIndex | None = None

    @property
    def root(self) -> Path:
        """The resolved data root (the variant folder is ``root / variant``)."""
        return resolve_root(self.hparams.root, "an8flower")

    @property
    def index(self) -> An8FlowerIndex:
        """The variant folder, read and checked (reads it on first use)."""
        if self._index is None:
            folder = self.root / self.hparams.variant
            if not (folder / FOLDS_FILE).is_file():
                raise DatasetNotFoundError(
                    "an8Flower-like",
                    self.root,
                    folder / FOLDS_FILE,
                    how_to_get(self.root, self.hparams.variant),
                )
            self._index = read_an8flower(folder)
        return self._index

    @property
    def class_table(self) -> list[ClassRow]:
        """Per class id: its discriminative part, colour name and RGB."""
        return self.index.classes

    @property
    def num_classes(self) -> int:
        return len(self.index.classes)

    @property
    def candidate_parts(self) -> tuple[str, ...]:
        """The parts a class may colour, in classes.csv order: the rows of ``part_masks``."""
        return tuple(dict.fromkeys(row.part for row in self.index.classes))

    def prepare_data(self) -> None:
        """With ``synthetic`` set: write the twin unless an up-to-date one is there."""
        if self.hparams.synthetic is None:
            return
        per_class, size = PRESETS[self.hparams.synthetic]
        ensure_an8flower(self.root, self.hparams.variant, per_class, size, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        """Split the index: the held-out fold for val and test, the rest for training."""
        if self.splits:
            return
        index, fold = self.index, self.hparams.fold
        held = (index.folds == fold).nonzero().flatten().tolist()
        train = (index.folds != fold).nonzero().flatten().tolist()
        if not held or not train:
            raise SettingError(
                f"{index.root / FOLDS_FILE} puts {len(held)} images in fold {fold} and "
                f"{len(train)} in the others; both must be non-empty: pick another "
                f"--data.init_args.fold"
            )
        size, normalize = self.hparams.image_size, self.hparams.normalize
        parts = None
        if self.hparams.part_masks:
            parts = (PartRenderer.of(index.root), self.candidate_parts)
        self.splits = {
            "train": An8FlowerImages(index, train, size, normalize),
            "val": An8FlowerImages(index, held, size, normalize, parts),
            "test": An8FlowerImages(index, held, size, normalize, parts),
        }
