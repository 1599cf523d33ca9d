"""MNIST digits one at a time, for classifiers (VEBI's LeNet, thesis ch. 3).

Reads the IDX files with ``datamodules.formats.mnist`` (the same reader as MNIST-bags). Splits:
``train`` is the MNIST train split minus its trailing ``val_fraction``, ``val`` those held-out
digits, ``test`` t10k. ``train_size`` keeps the first N training digits (a CPU budget; the rest
are not read into the loaders). Images are (1, 28, 28) floats normalised by the usual MNIST
mean and std (0.1307, 0.3081). A batch is ``image``, ``label`` (long) and ``index`` (the digit's
row in its IDX file). Loaders come from ``SplitDataModule``: under DDP each process evaluates its
own shard, each digit once over all processes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.formats.mnist import read_mnist_split
from datamodules.mnist_bags import MNIST_MEAN, MNIST_STD
from datamodules.paths import resolve_root
from datamodules.split_loaders import SplitDataModule

__all__ = ["MNISTDataModule", "MNISTDigits"]


class MNISTDigits(Dataset):
    """Rows ``rows`` of uint8 images (N, 28, 28) with their digit labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.rows = torch.from_numpy(rows.astype(np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.rows[i]
        image = (self.images[row].float() / 255.0 - MNIST_MEAN) / MNIST_STD
        return {"image": image[None], "label": self.labels[row], "index": row}


class MNISTDataModule(SplitDataModule):
    """MNIST digits for classification.

    Args:
        root: Folder with the MNIST IDX files (raw or .gz, flat or ``MNIST/raw``); default
            ``resolve_root(None, "mnist")``.
        val_fraction: Trailing fraction of the train split held out for validation.
        train_size: Keep the first N training digits (None: all).
        predict_splits: The splits ``predict`` serves, one loader each (VEBI's response stage
            reads ``train`` and ``test``).
        batch_size: Training batch size (100 in VEBI's LeNet recipe).
        eval_batch_size: Validation / test / predict batch size (default: ``batch_size``).
        num_workers: DataLoader workers.
    """

    num_classes = 10

    def __init__(
        self,
        root: str | None = None,
        val_fraction: float = 1 / 12,
        train_size: int | None = None,
        predict_splits: list[str] | None = None,
        batch_size: int = 100,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if train_size is not None and train_size < 1:
            raise ValueError(f"train_size must be positive, got {train_size}")
        unknown = sorted(set(predict_splits or ()) - {"train", "val", "test"})
        if unknown:
            raise ValueError(f"predict_splits must name train, val or test, got {unknown}")
        self.predict_splits = list(predict_splits or ["test"])
        self.splits: dict[str, MNISTDigits] = {}

    @property
    def image_mean(self) -> tuple[float]:
        """The grey channel's mean subtracted from [0, 1] images."""
        return (MNIST_MEAN,)

    @property
    def image_std(self) -> tuple[float]:
        """The grey channel's std dividing [0, 1] images."""
        return (MNIST_STD,)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        root = resolve_root(self.hparams.root, "mnist")
        train_images, train_labels = read_mnist_split(root, "train")
        test_images, test_labels = read_mnist_split(root, "test")
        n = len(train_labels)
        n_fit = n - int(round(self.hparams.val_fraction * n))
        size = self.hparams.train_size
        if size is not None and size > n_fit:
            raise ValueError(f"train_size={size}, but {root} holds {n_fit} training digits")
        fit = np.arange(n_fit if size is None else size)
        self.splits = {
            "train": MNISTDigits(train_images, train_labels, fit),
            "val": MNISTDigits(train_images, train_labels, np.arange(n_fit, n)),
            "test": MNISTDigits(test_images, test_labels, np.arange(len(test_labels))),
        }
