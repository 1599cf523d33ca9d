"""CelebA as OLR reads it: 38 labels, 178 x 178 centre crops in [0, 1], a split by count, pairs.

``OLRDataModule`` builds a ``datamodules.celeba.CelebADataModule`` with OLR's fixed choices
(``Wearing_Necklace`` and ``Wearing_Necktie`` dropped, the other 38 labels in official order; crop
rows 20-197; no normalisation, no augmentation; a seeded random split with exactly ``train_count``
training images and the rest as test, no validation part) and serves its splits in one of two
modes:

- ``pairs=False`` (classifier, decoder): clean single images, the ``CelebADataModule`` batch
  (``image`` float (B, 3, S, S) in [0, 1], ``attributes`` float (B, 38) in {0, 1}, ``identity``,
  ``image_id``). Train is shuffled; validation and test serve the test split.
- ``pairs=True`` (Siamese network): ``datamodules.pairs.OcclusionPairs`` batches (``image_a``,
  ``image_b`` occluded, ``attributes_a``, ``attributes_b``, ``index_a``, ``index_b``,
  ``image_id_a``, ``image_id_b``, ``box_a``, ``box_b``, ``epoch``). Training pairs every image
  with a fresh uniform partner and fresh occlusions each epoch (``EpochSampler``); validation and
  test serve one fixed set of pairs of test images (one per test image, the same every epoch):
  the held-out pair loss. With ``self_pairs=True`` training batches also carry ``image_a2`` and
  ``box_a2``, image ``a`` under a second independent occlusion (``OLRSiamese``'s self pairs).

In both modes ``predict_dataloader`` returns one loader of clean images per entry of
``predict_splits`` (default train then test; ``dataloader_idx`` follows that order), for
embedding extraction. Under DDP every evaluation and prediction loader gives each process its own
items, each item once over all processes (``datamodules.sharding``).
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from datamodules.celeba import CelebADataModule
from datamodules.occluded_images import OccludedImages
from datamodules.occlusion import MAX_FRACTION, MIN_FRACTION, check_fractions
from datamodules.pairs import EpochSampler, OcclusionPairs
from datamodules.split_loaders import SplitDataModule

DROPPED_LABELS = ("Wearing_Necklace", "Wearing_Necktie")  # OLR's 38 labels leave these out
PAPER_TRAIN_COUNT = 190_000  # OLR's random train split of the 202,599 images

Split = Literal["train", "test"]


class OLRDataModule(SplitDataModule):
    """CelebA for OLR: clean images (``pairs=False``) or occluded pairs (``pairs=True``).

    Args:
        root: CelebA root (``img_align_celeba/`` and the annotation files); None resolves
            ``$LATENTLAB_DATA/celeba`` else ``data/celeba``.
        image_size: Side of the network input; the 178 x 178 crop is resized to it (178 = none).
        train_count: Images in the random training split; the rest is the test split.
        seed: Seed of the split and of the pairs and occlusions.
        pairs: Serve occluded pairs (Siamese stage) instead of clean images.
        min_fraction: Smallest occlusion side, as a fraction of the image side.
        max_fraction: Largest occlusion side, as a fraction of the image side.
        fill: Value of occluded pixels (0 = black).
        self_pairs: With ``pairs=True``, training items also carry ``image_a2``, image ``a``
            under a second independent occlusion (``OcclusionPairs(second_view=True)``): a self
            pair for the Siamese loss. Held-out pairs are unchanged.
        train_occlusion: With ``pairs=False``, the probability that a training image is occluded
            as the pairs are (``datamodules.occluded_images``; 0 = clean images, the spec's C).
            Evaluation and predict images stay clean.
        crop: Crop of the 178 x 218 image (``datamodules.celeba.CROP_BOXES``); ``"center"`` is
            rows 20-197.
        predict_splits: Splits of clean images served by ``predict_dataloader``, in order.
        batch_size: Images (or pairs) per batch.
        num_workers: DataLoader worker processes.
        synthetic: Write the synthetic twin with this preset when ``root`` has no CelebA
            (``datamodules.celeba.CelebADataModule``).
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 178,
        train_count: int = PAPER_TRAIN_COUNT,
        seed: int = 0,
        pairs: bool = False,
        min_fraction: float = MIN_FRACTION,
        max_fraction: float = MAX_FRACTION,
        fill: float = 0.0,
        self_pairs: bool = False,
        train_occlusion: float = 0.0,
        crop: Literal["none", "center", "face128", "ffhq"] = "center",
        predict_splits: list[Split] | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        synthetic: Literal["tiny", "small", "default"] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_fractions(min_fraction, max_fraction)
        if not 0.0 <= train_occlusion <= 1.0:
            raise ValueError(f"train_occlusion must be in [0, 1], got {train_occlusion}")
        if pairs and train_occlusion:
            raise ValueError("train_occlusion is for clean-image training (pairs=False)")
        if self_pairs and not pairs:
            raise ValueError("self_pairs is for occluded-pair training (pairs=True)")
        self.predict_splits: list[str] = list(predict_splits or ["train", "test"])
        unknown = [s for s in self.predict_splits if s not in ("train", "test")]
        if unknown:
            raise ValueError(f"predict_splits takes 'train' and 'test', got {unknown}")
        # A fresh context: under LightningCLI the hyperparameters given to this class are held in
        # a context variable that the inner module's save_hyperparameters would take as its own.
        self.faces = contextvars.Context().run(
            CelebADataModule,
            root=root,
            image_size=image_size,
            split="random",
            train_count=train_count,
            val_fraction=0.0,
            seed=seed,
            drop_attributes=list(DROPPED_LABELS),
            crop=crop,
            normalize="none",
            batch_size=batch_size,
            num_workers=num_workers,
            synthetic=synthetic,
        )
        self.splits = {}

    # facts the LightningModules read ---------------------------------------------------------
    @property
    def root(self) -> Path:
        """The resolved data root."""
        return self.faces.root

    @property
    def attribute_names(self) -> list[str]:
        """The 38 label names, official CelebA order (available before ``setup``)."""
        return self.faces.attribute_names

    @property
    def num_attributes(self) -> int:
        """Number of labels (38)."""
        return self.faces.num_attributes

    @property
    def train_attributes(self) -> torch.Tensor:
        """uint8 (N_train, 38) labels of the training split (majority baseline); needs ``setup``."""
        return self.faces.train_attributes

    @property
    def image_mean(self) -> tuple[float, float, float]:
        """Zero: images are in [0, 1], not normalised."""
        return self.faces.image_mean

    @property
    def image_std(self) -> tuple[float, float, float]:
        """One: images are in [0, 1], not normalised."""
        return self.faces.image_std

    # hooks -----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the synthetic twin when asked to and absent."""
        self.faces.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """Split CelebA, then wrap the splits as pairs (``pairs=True``) or serve them as such."""
        if self.splits:
            return
        self.faces.setup(stage)
        train, test = self.faces.splits["train"], self.faces.splits["test"]
        self.splits = {"images_train": train, "images_test": test}
        if self.hparams.pairs:
            hp = self.hparams
            kwargs = {"min_fraction": hp.min_fraction, "max_fraction": hp.max_fraction}
            held_out = OcclusionPairs(test, hp.seed, fill=hp.fill, **kwargs)
            self.splits |= {
                "train": OcclusionPairs(
                    train, hp.seed, fill=hp.fill, second_view=hp.self_pairs, **kwargs
                ),
                "val": held_out,
                "test": held_out,
            }
        else:
            if self.hparams.train_occlusion:
                hp = self.hparams
                train = OccludedImages(
                    train, hp.train_occlusion, hp.seed, hp.min_fraction, hp.max_fraction, hp.fill
                )
            self.splits |= {"train": train, "val": test, "test": test}

    def train_dataloader(self) -> DataLoader:
        if not (self.hparams.pairs or self.hparams.train_occlusion):
            return super().train_dataloader()
        train = self.splits["train"]
        return self._loader("train", sampler=EpochSampler(train, seed=self.hparams.seed))

    def predict_dataloader(self) -> list[DataLoader]:
        """Clean images of each split of ``predict_splits``, in that order, in file order."""
        return [self._loader(f"images_{split}") for split in self.predict_splits]
