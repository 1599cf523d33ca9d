"""CelebA as the disentangled adversarial autoencoder reads it: posed, mirrored faces in [-1, 1].

``DisentangledAAEDataModule`` reads the official aligned CelebA layout (or its synthetic twin)
with the landmarks, fits every image's head pose from its five landmarks
(``datamodules.head_pose``: the suite's substitute for the paper's OpenFace poses, [SUBST]),
cuts the 128 x 128 face crop at (x=25, y=45) (the suite's shared face crop), optionally
equalises the luminance histogram (the paper's preprocessing; off for the twin), resizes to
``image_size`` and scales to [-1, 1]. Training images are mirrored with probability
``flip_probability`` (the paper's only augmentation) and their pose mirrored with them (yaw and
roll negated: the suite's correction, not in the paper). Splits are CelebA's official partition
(identity-disjoint on the twin).

Batches: ``image`` float (B, 3, S, S) in [-1, 1], ``pose`` float (B, 3) yaw/pitch/roll in
radians, ``identity`` long (B,), ``attributes`` float (B, 40), ``image_id``, ``flipped`` bool
(B,). ``predict_dataloader`` serves the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from datamodules.celeba import CROP_BOXES, check_image_files, prepare_twin
from datamodules.formats.celeba import CelebAIndex, read_celeba
from datamodules.head_pose import pose_from_landmarks
from datamodules.images import NORMALIZATIONS, square_transform
from datamodules.paths import resolve_root
from datamodules.posed_faces import PosedFaces
from datamodules.split_loaders import SplitDataModule

__all__ = ["DisentangledAAEDataModule"]

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class DisentangledAAEDataModule(SplitDataModule):
    """Aligned faces with fitted head poses for the disentangled AAE.

    Args:
        root: Folder with ``img_align_celeba/``, the annotation files and
            ``list_landmarks_align_celeba.txt``; None resolves ``$LATENTLAB_DATA/celeba`` else
            ``data/celeba``.
        image_size: Side of the network input (the paper: 128).
        crop: The crop box cut before the resize (``face128``: 128 x 128 at x=25, y=45).
        hist_eq: Equalise the luminance histogram of each crop (the paper's preprocessing).
        flip_probability: Chance of mirroring a training image (pose corrected); 0 = off.
        batch_size: Images per batch (the paper: 100).
        num_workers: DataLoader worker processes.
        seed: Seed of the synthetic twin.
        synthetic: When set (``"tiny"``, ``"small"``, ``"default"``) and ``root`` has no
            ``list_attr_celeba.txt``, ``prepare_data`` writes the synthetic twin with that preset
            into ``root``'s parent (``root`` must then end in ``celeba``).
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 128,
        crop: Literal["none", "center", "face128", "ffhq"] = "face128",
        hist_eq: bool = True,
        flip_probability: float = 0.5,
        batch_size: int = 100,
        num_workers: int = 2,
        seed: int = 0,
        synthetic: Literal["tiny", "small", "default"] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if crop not in CROP_BOXES:
            raise ValueError(f"crop must be one of {sorted(CROP_BOXES)}, got {crop!r}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        self.splits: dict[str, PosedFaces] = {}
        self.index: CelebAIndex | None = None

    @property
    def root(self) -> Path:
        """The resolved data root."""
        return resolve_root(self.hparams.root, "celeba")

    @property
    def image_size(self) -> int:
        """Side of the served images (the model must agree)."""
        return self.hparams.image_size

    @property
    def image_mean(self) -> tuple[float, float, float]:
        """Images are [0, 1] scaled to [-1, 1] (the generator's tanh range): mean 0.5."""
        return NORMALIZATIONS["signed"][0]

    @property
    def image_std(self) -> tuple[float, float, float]:
        """... and std 0.5."""
        return NORMALIZATIONS["signed"][1]

    def prepare_data(self) -> None:
        """With ``synthetic`` set: write the twin unless an up-to-date one is at ``root``."""
        prepare_twin(self.root, self.hparams.synthetic, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        """Read and cross-check the tables and landmarks, fit the poses, build the splits."""
        if self.splits:
            return
        index = read_celeba(self.root, landmarks=True)
        check_image_files(index)
        poses = pose_from_landmarks(index.landmarks)
        hp = self.hparams
        crop = CROP_BOXES[hp.crop]
        transform = square_transform(hp.image_size, "signed")
        columns = list(range(index.attributes.shape[1]))
        for name, code in _SPLIT_CODES.items():
            rows = torch.nonzero(index.partition == code).flatten()
            if len(rows) == 0:
                raise ValueError(
                    f"{self.root / 'list_eval_partition.txt'} lists no {name} image (code {code})"
                )
            flip = hp.flip_probability if name == "train" else 0.0
            self.splits[name] = PosedFaces(
                index, rows, columns, poses, transform, crop, flip, hp.hist_eq
            )
        self.index = index
