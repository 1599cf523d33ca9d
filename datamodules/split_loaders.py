"""A LightningDataModule base: ``setup`` fills ``self.splits``, the loaders come for free."""

from __future__ import annotations

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset


class SplitDataModule(LightningDataModule):
    """Serves ``self.splits["train" | "val" | "test"]``; prediction serves the test split.

    Subclasses save ``batch_size`` and ``num_workers`` among their hyperparameters and fill
    ``self.splits`` in ``setup``. Training batches are shuffled; evaluation batches keep file order.
    """

    splits: dict[str, Dataset]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.splits[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
