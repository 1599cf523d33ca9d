"""CelebA exemplar sets for multiple-exemplar face hallucination (PWAVE, thesis ch. 6; spec
hallucination.md section 2), from the official aligned release or its exemplar twin
(``datamodules.synthetic.exemplar_faces``), both read by ``datamodules.formats.celeba``.

Per split of the official partition, identities with fewer than ``min_images`` images in that
split are dropped (the counts are logged and kept in ``identity_counts``). Images are the 128 x 128
crop (rows 45-172, columns 25-152), or a square ``window`` of it (a CPU-budget option: the twin's
five detail regions all lie in the 64 px window at (48, 32)); inputs are the image's side / 8
(16 px at 128, ``scale=8``) or / 16 (8 px, ``scale=16``). The
pairing rule, the item keys and exemplar occlusion are ``datamodules.exemplar_sets``'s.

Batches (``collate_exemplars``), images in [-1, 1]: ``image_lr`` (B, 3, h, h), ``image_hr``
(B, 3, S, S), ``exemplars`` (B, m, 3, S, S) (S = 128, or the window's side), ``exemplar_index``
long (B, m), ``exemplar_ids`` B lists of m names, ``exemplar_attributes`` (B, m, 40),
``identity`` (B,), ``attributes`` (B, 40), ``image_id``, ``index``; on the twin also
``regions`` (B, R, 4), ``exemplar_regions`` (B, m, R, 4) and ``exemplar_occluded`` (B, m, R).

m is the same for every item of a batch: ``num_exemplars`` on validation and test, and in
training either that (``train_m="fixed"``) or, with ``train_m="uniform1to5"``, drawn per batch
uniformly from 1..5 by the training sampler, which tags each key with its batch's m. Items of a
batch therefore stack without padding, and m varies only between batches.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from datamodules.celeba import CROP_BOXES, CelebAFaces, check_image_files
from datamodules.exemplar_sets import ExemplarCountSampler, ExemplarFaces, collate_exemplars
from datamodules.formats.celeba import ATTRIBUTE_NAMES, CelebAIndex, how_to_get, read_celeba
from datamodules.formats.errors import DatasetNotFoundError, SettingError
from datamodules.formats.exemplar_regions import SIDECAR_FILE, read_region_boxes
from datamodules.paths import make_data_command, resolve_root
from datamodules.split_loaders import SplitDataModule
from datamodules.synthetic.exemplar_faces import ensure_exemplar_faces

HR_SIZE = 128
TRAIN_COUNTS = {"uniform1to5": (1, 2, 3, 4, 5)}  # m drawn per training batch
_CODES = {"train": 0, "val": 1, "test": 2}


class CelebAExemplarDataModule(SplitDataModule):
    """Targets, low-resolution inputs and same-identity exemplars from CelebA or its exemplar twin.

    Args:
        root: CelebA root (``img_align_celeba/`` and the tables); None resolves
            ``$LATENTLAB_DATA/celeba`` else ``data/celeba``.
        scale: 8 (16 px inputs) or 16 (8 px inputs).
        num_exemplars: m on validation and test, and in training with ``train_m="fixed"``
            (3: Fig. 6.6's W has three exemplars; 0: the model without exemplars, Fig. 6.8).
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
        window: ``(top, left, size)`` of a square inside the 128 px crop that every image is cut
            to (``size`` a multiple of the scale); region boxes then come in its frame. None:
            the whole crop (the thesis).
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
        window: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if scale not in (8, 16):
            raise ValueError(f"scale must be 8 or 16, got {scale}")
        if train_m not in ("fixed", *TRAIN_COUNTS):
            raise ValueError(
                f"train_m must be 'fixed' or one of {list(TRAIN_COUNTS)}, got {train_m!r}"
            )
        if num_exemplars < 0 or min_images < 2 or min_clean < 0:
            raise ValueError(
                "need num_exemplars >= 0, min_images >= 2 (a target and an exemplar) and "
                f"min_clean >= 0, got {num_exemplars}, {min_images}, {min_clean}"
            )
        if not 0.0 <= occlusion_p <= 1.0:
            raise ValueError(f"occlusion_p must be in [0, 1], got {occlusion_p}")
        if window is not None:
            top, left, size = window
            if min(top, left) < 0 or size < scale or max(top, left) + size > HR_SIZE:
                raise ValueError(
                    f"window (top, left, size) = {tuple(window)} must lie inside the "
                    f"{HR_SIZE} px crop with size >= scale {scale}"
                )
            if size % scale:
                raise ValueError(f"window size {size} is not a multiple of the scale {scale}")
        self.splits: dict[str, ExemplarFaces] = {}
        self.identity_counts: dict[str, dict[str, int]] = {}

    @property
    def root(self) -> Path:
        """The resolved data root."""
        return resolve_root(self.hparams.root, "celeba")

    @property
    def hr_size(self) -> int:
        """Side of ``image_hr`` and the exemplars: 128, or the window's."""
        window = self.hparams.window
        return HR_SIZE if window is None else int(window[2])

    @property
    def low_size(self) -> int:
        """Side of ``image_lr``: ``hr_size // scale``."""
        return self.hr_size // self.hparams.scale

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
                None if hp.window is None else tuple(hp.window),
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


def _read_index(root: Path) -> CelebAIndex:
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
