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

Stage A (``stage="ae"``) trains on shuffled batches of ``batch_size`` training images:
``image`` float (B, 3, S, S) in [-1, 1], ``pose`` float (B, 3) yaw/pitch/roll in radians,
``identity`` long (B,), ``attributes`` float (B, 40), ``image_id``, ``flipped`` bool (B,).

Stages B and C (``"disentangle"``, ``"joint"``) train on three label sources in turn, one batch
each per round (``datamodules.round_robin``), every batch tagged with its ``source``:

- ``identity``: macro-batches of ``identities_per_batch`` persons x ``images_per_identity``
  images (``ClassSetSampler``), for the identity triplets;
- ``expression``: random images with the [SUBST] proxy labels ``expression`` (4 classes from
  Smiling x Mouth_Slightly_Open) and ``valence_arousal`` (``datamodules.expression_proxy``);
- ``style``: ``persons_per_batch`` persons x ``clips_per_person`` clips x ``frames_per_clip``
  frames (``ClipSetSampler``) with ``identity`` and ``clip``: CelebA pseudo-clips (one image
  and jittered views of it, the [SUBST] for VoxCeleb; ``style_source: pseudo_clips``) or the
  real clips of a clip tree (``clip_tree``: ``<clip_root>/<identity>/<clip>/<frame>.jpg``, the
  twin writes one at ``vox/`` beside ``celeba/``).

All three carry ``pose``. The three batch sizes must agree. Validation and test serve the plain
val and test splits in every stage; ``predict_dataloader`` serves the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from datamodules.celeba import CROP_BOXES, check_image_files, prepare_twin
from datamodules.clip_faces import ClipTreeFaces
from datamodules.expression_proxy import ExpressionFaces
from datamodules.formats.celeba import CelebAIndex, read_celeba
from datamodules.formats.clip_tree import read_clip_tree
from datamodules.head_pose import pose_from_landmarks
from datamodules.images import square_transform
from datamodules.paths import resolve_root
from datamodules.posed_faces import PosedFaces
from datamodules.pseudo_clips import PseudoClips
from datamodules.round_robin import RandomBatches, RoundRobinBatches
from datamodules.samplers import ClassSetSampler, ClipSetSampler
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
        seed: Seed of the synthetic twin and of the label sources' draws.
        stage: ``"ae"`` (plain batches) or ``"disentangle"`` / ``"joint"`` (label sources in
            turn); the model's stage must agree.
        identities_per_batch: Persons per identity batch (the paper: 20).
        images_per_identity: Images per person in an identity batch (5).
        persons_per_batch: Persons per style batch (5).
        clips_per_person: Clips per person in a style batch (4).
        frames_per_clip: Frames per clip in a style batch (5); with pseudo-clips also the number
            of views per image.
        style_source: ``"pseudo_clips"`` (CelebA, [SUBST]) or ``"clip_tree"`` (real clips).
        clip_root: The clip tree's folder; None takes ``vox`` beside ``root``.
        rounds_per_epoch: Batches per source per epoch in Stages B and C; None: the training
            images over the label batch size.
        synthetic: When set (``"tiny"``, ``"small"``, ``"default"``) and ``root`` has no
            ``list_attr_celeba.txt``, ``prepare_data`` writes the synthetic twin with that preset
            into ``root``'s parent (``root`` must then end in ``celeba``).
    """

    normalize = "signed"  # [0, 1] scaled to [-1, 1], the generator's tanh range

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
        stage: Literal["ae", "disentangle", "joint"] = "ae",
        identities_per_batch: int = 20,
        images_per_identity: int = 5,
        persons_per_batch: int = 5,
        clips_per_person: int = 4,
        frames_per_clip: int = 5,
        style_source: Literal["pseudo_clips", "clip_tree"] = "pseudo_clips",
        clip_root: str | None = None,
        rounds_per_epoch: int | None = None,
        synthetic: Literal["tiny", "small", "default"] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if crop not in CROP_BOXES:
            raise ValueError(f"crop must be one of {sorted(CROP_BOXES)}, got {crop!r}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        if stage not in ("ae", "disentangle", "joint"):
            raise ValueError(f"stage must be 'ae', 'disentangle' or 'joint', got {stage!r}")
        if style_source not in ("pseudo_clips", "clip_tree"):
            raise ValueError(
                f"style_source must be 'pseudo_clips' or 'clip_tree', got {style_source!r}"
            )
        identity_batch = identities_per_batch * images_per_identity
        style_batch = persons_per_batch * clips_per_person * frames_per_clip
        if stage != "ae" and identity_batch != style_batch:
            raise ValueError(
                f"the label sources take turns in one loader, so their batches must agree: "
                f"identities_per_batch x images_per_identity = {identity_batch} but "
                f"persons_per_batch x clips_per_person x frames_per_clip = {style_batch}"
            )
        self.splits: dict[str, PosedFaces] = {}
        self.sources: dict[str, Dataset] = {}
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
    def stage(self) -> str:
        """The stage whose batches are served (the model must agree)."""
        return self.hparams.stage

    @property
    def clip_root(self) -> Path:
        """The clip tree's folder (``style_source: clip_tree``)."""
        root = self.hparams.clip_root
        return Path(root) if root is not None else self.root.parent / "vox"

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
        if hp.stage != "ae":
            self.sources = self._label_sources(transform, crop)

    def train_dataloader(self) -> DataLoader:
        """Stage A: shuffled training images. Stages B, C: the label sources in turn."""
        if self.hparams.stage == "ae":
            return super().train_dataloader()
        hp, sources = self.hparams, list(self.sources.values())
        batch = hp.identities_per_batch * hp.images_per_identity
        rounds = hp.rounds_per_epoch or max(len(self.splits["train"]) // batch, 1)
        samplers = [
            ClassSetSampler(
                sources[0].identities,
                hp.identities_per_batch,
                hp.images_per_identity,
                rounds,
                hp.seed,
            ),
            RandomBatches(len(sources[1]), batch, rounds, hp.seed),
            ClipSetSampler(
                sources[2].identities,
                sources[2].clips,
                hp.persons_per_batch,
                hp.clips_per_person,
                hp.frames_per_clip,
                rounds,
                hp.seed,
            ),
        ]
        offsets = [sum(len(s) for s in sources[:i]) for i in range(len(sources))]
        sampler = RoundRobinBatches(samplers, offsets)
        return DataLoader(
            ConcatDataset(sources),
            batch_size=sampler.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def _label_sources(self, transform, crop) -> dict[str, Dataset]:
        """The identity, expression and style sources of Stages B and C, items tagged."""
        hp, train = self.hparams, self.splits["train"]
        if hp.style_source == "clip_tree":
            tree = read_clip_tree(self.clip_root)
            style: Dataset = ClipTreeFaces(tree, transform, crop, hp.flip_probability, hp.hist_eq)
        else:
            style = PseudoClips(
                train, views=hp.frames_per_clip, flip_probability=hp.flip_probability
            )
        expression = ExpressionFaces(train, self.index.attribute_names)
        return {
            "identity": _Tagged(train, "identity"),
            "expression": _Tagged(expression, "expression"),
            "style": _Tagged(style, "style"),
        }


class _Tagged(Dataset):
    """A label source whose items say which source they come from (``source``)."""

    def __init__(self, dataset: Dataset, source: str) -> None:
        self.dataset, self.source = dataset, source
        self.identities = getattr(dataset, "identities", None)
        self.clips = getattr(dataset, "clips", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return dict(self.dataset[i]) | {"source": self.source}
