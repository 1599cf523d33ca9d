"""A LightningDataModule base: ``setup`` fills ``self.splits``, the loaders come for free."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.images import NORMALIZATIONS
from datamodules.sharding import eval_sampler


class SplitDataModule(LightningDataModule):
    """Serves ``self.splits["train" | "val" | "test"]``; prediction serves ``predict_splits`` (the
    test split unless a subclass sets others).

    Subclasses save ``batch_size``, ``num_workers`` and ``normalize`` (a key of
    ``datamodules.images.NORMALIZATIONS``; or set the class attribute) among their hyperparameters
    and fill ``self.splits`` in
    ``setup``; an ``eval_batch_size`` hyperparameter, when saved and set, sizes the batches of the
    other splits, and ``collate_fn`` (None: the default) collates every loader's items. Training
    batches are shuffled (under DDP Lightning gives each process its share);
    evaluation batches keep file order, and under DDP each process evaluates its own items, each
    item once over all processes (``datamodules.sharding.eval_sampler``).
    """

    splits: dict[str, Dataset]
    #: Splits ``predict_dataloader`` serves, one loader each, in this order (``dataloader_idx``).
    predict_splits: tuple[str, ...] | list[str] = ("test",)
    #: Normalisation of a subclass without a ``normalize`` hyperparameter (its fixed range).
    normalize: str = "imagenet"
    #: Collates the items of every loader; None = ``torch.utils.data.default_collate``.
    collate_fn: Callable[[list], Any] | None = None

    @property
    def image_mean(self) -> tuple[float, float, float]:
        """Per-channel mean subtracted from [0, 1] images (callbacks use it to undo it)."""
        return NORMALIZATIONS[self.hparams.get("normalize", self.normalize)][0]

    @property
    def image_std(self) -> tuple[float, float, float]:
        """Per-channel std dividing [0, 1] images."""
        return NORMALIZATIONS[self.hparams.get("normalize", self.normalize)][1]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per split of ``predict_splits`` (a plain loader for one split)."""
        splits = list(self.predict_splits)
        loaders = [self._loader(s, dataset=self.predict_dataset(s)) for s in splits]
        return loaders[0] if len(loaders) == 1 else loaders

    def predict_dataset(self, split: str) -> Dataset:
        """What prediction reads of ``split``: ``self.splits[split]``; a subclass whose training
        split augments serves it with the evaluation transform."""
        return self.splits[split]

    def _loader(
        self,
        split: str,
        shuffle: bool = False,
        sampler: Sampler | None = None,
        dataset: Dataset | None = None,
        batch_size: int | None = None,
    ) -> DataLoader:
        """The loader of ``dataset`` (default ``self.splits[split]``); ``sampler``, when given,
        orders it instead (a whole-batch sampler with its own ``batch_size``, which then replaces
        the hparam's)."""
        workers = self.hparams.num_workers
        dataset = self.splits[split] if dataset is None else dataset
        if batch_size is None and split != "train":
            batch_size = self.hparams.get("eval_batch_size")
        if sampler is None and not shuffle:
            sampler = eval_sampler(dataset, split)
        return DataLoader(
            dataset,
            batch_size=batch_size or self.hparams.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=self.collate_fn,
        )
