"""The MNIST digits DataModule: splits, normalisation, labels against the IDX reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.formats.mnist import read_mnist_split
from datamodules.mnist_digits import MNISTDataModule
from datamodules.synthetic.mnist import write_synthetic_mnist

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def twin_root(tmp_path_factory):
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist_twin"))


def test_splits_are_the_train_head_its_tail_and_t10k(twin_root):
    dm = MNISTDataModule(root=str(twin_root), val_fraction=0.25, batch_size=16)
    dm.setup()
    images, labels = read_mnist_split(twin_root, "train")
    n = len(labels)
    n_val = int(round(0.25 * n))
    assert len(dm.splits["train"]) == n - n_val and len(dm.splits["val"]) == n_val
    assert len(dm.splits["test"]) == len(read_mnist_split(twin_root, "test")[1])
    item = dm.splits["val"][3]
    row = n - n_val + 3
    assert int(item["index"]) == row and int(item["label"]) == int(labels[row])
    expected = (images[row].astype(np.float32) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(item["image"][0].numpy(), expected, rtol=1e-6)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 1, 28, 28) and batch["label"].dtype == torch.long
    test_rows = torch.cat([b["index"] for b in dm.test_dataloader()])
    assert torch.equal(test_rows, torch.arange(len(dm.splits["test"])))  # in order, each once


def test_train_size_keeps_the_first_digits_and_refuses_too_many(twin_root):
    dm = MNISTDataModule(root=str(twin_root), train_size=50)
    dm.setup()
    assert dm.splits["train"].rows.tolist() == list(range(50))
    with pytest.raises(ValueError, match="train_size=100000"):
        MNISTDataModule(root=str(twin_root), train_size=100_000).setup()
    with pytest.raises(ValueError, match="val_fraction"):
        MNISTDataModule(val_fraction=1.0)


def test_a_missing_mnist_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data DATASET=mnist"):
        MNISTDataModule(root=str(tmp_path / "none")).setup()


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST not found at {REAL_MNIST}")
def test_real_mnist_sizes_and_class_balance():
    dm = MNISTDataModule(root=str(REAL_MNIST))
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    counts = torch.bincount(dm.splits["test"].labels, minlength=10)
    assert counts.sum() == 10000 and counts.min() > 850
