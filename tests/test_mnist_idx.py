"""IDX reader/writer, checksums and the synthetic MNIST twin (real files when ../shared exists)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.formats.mnist import (
    MD5,
    find_file,
    idx_magic,
    md5_uncompressed,
    read_idx,
    read_mnist_split,
    verify_mnist,
    write_idx,
)
from datamodules.synthetic.mnist import synthetic_mnist_arrays, write_synthetic_mnist

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_real = pytest.mark.skipif(
    not REAL_MNIST.is_dir(), reason=f"real MNIST not found at {REAL_MNIST} (../shared absent)"
)


def test_reader_parses_hand_built_bytes(tmp_path):
    # magic 0x00000803 (2051), dims 2 x 2 x 3, then 12 values
    data = bytes([0, 0, 8, 3]) + struct.pack(">3i", 2, 2, 3) + bytes(range(12))
    (tmp_path / "x").write_bytes(data)
    array = read_idx(tmp_path / "x")
    assert array.shape == (2, 2, 3) and array.dtype == np.uint8
    assert array[1, 0, 2] == 8  # C order: 1 * 6 + 0 * 3 + 2
    assert idx_magic(tmp_path / "x") == 2051


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_read_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5, dtype=np.uint8)
    write_idx(tmp_path / f"i{suffix}", images)
    write_idx(tmp_path / f"l{suffix}", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / f"i{suffix}"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"l{suffix}"), labels)
    assert idx_magic(tmp_path / f"i{suffix}") == 2051 and idx_magic(tmp_path / f"l{suffix}") == 2049
    raw = bytes([0, 0, 8, 1]) + struct.pack(">i", 5) + labels.tobytes()
    assert md5_uncompressed(tmp_path / f"l{suffix}") == hashlib.md5(raw).hexdigest()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes([0, 0, 8, 1]) + struct.pack(">i", 4) + bytes(3), "needs 4 values, file holds 3"),
        (bytes([0, 0, 8, 1]) + struct.pack(">i", 2) + bytes(3), "needs 2 values, file holds 3"),
        (bytes([0, 0, 0x0D, 1]) + struct.pack(">i", 1) + bytes(4), "unsupported IDX type 0x0d"),
        (bytes([1, 0, 8, 1]), "not an IDX file"),
        (bytes([0, 0, 8, 3]) + bytes(5), "truncated header"),
    ],
)
def test_malformed_files_raise_with_path(tmp_path, data, message):
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(FormatError, match=message) as info:
        read_idx(tmp_path / "bad")
    assert str(tmp_path / "bad") in str(info.value)


def test_truncated_gzip_raises(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((50, 28, 28), np.uint8))
    data = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "a.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="a.gz"):
        read_idx(tmp_path / "a.gz")


def test_split_checks_counts_magic_and_missing(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DatasetNotFoundError, match="train-labels-idx1-ubyte"):
        read_mnist_split(tmp_path, "train")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(FormatError, match="2 labels for 3 images"):
        read_mnist_split(tmp_path, "train")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((3, 28, 28), np.uint8))  # swapped
    with pytest.raises(FormatError, match="magic 2051, expected 2049"):
        read_mnist_split(tmp_path, "train")


def test_find_file_accepts_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(4, dtype=np.uint8))
    assert find_file(tmp_path, "t10k-labels-idx1-ubyte") == raw / "t10k-labels-idx1-ubyte.gz"


def test_twin_is_deterministic_readable_and_stratified(tmp_path):
    a, b = write_synthetic_mnist(tmp_path / "a"), write_synthetic_mnist(tmp_path / "b", gzip=False)
    for name in MD5:
        assert md5_uncompressed(find_file(a, name)) == md5_uncompressed(find_file(b, name))
    train_images, train_labels = read_mnist_split(a, "train")
    test_images, test_labels = read_mnist_split(a, "test")
    assert train_images.shape[1:] == (28, 28) and len(train_labels) + len(test_labels) == 1797
    for digit in range(10):  # 80 / 20 per class
        n_train, n_test = (train_labels == digit).sum(), (test_labels == digit).sum()
        assert abs(n_train / (n_train + n_test) - 0.8) < 0.01
    assert train_images[:, :4].max() == 0 and train_images[:, :, 24:].max() == 0  # 20x20 box
    assert train_images.max() > 200
    means = [train_images[train_labels == d].mean(0) for d in range(10)]
    assert np.abs(means[0] - means[1]).mean() > 10  # classes carry distinct shapes
    with pytest.raises(FormatError, match="MD5 of the uncompressed file"):
        verify_mnist(a)  # the twin is not MNIST


def test_twin_arrays_match_written_files(tmp_path):
    write_synthetic_mnist(tmp_path)
    images, labels = synthetic_mnist_arrays()["test"]
    read_images, read_labels = read_mnist_split(tmp_path, "test")
    np.testing.assert_array_equal(images, read_images)
    np.testing.assert_array_equal(labels, read_labels)


@needs_real
def test_real_mnist_checksums_and_contents():
    found = verify_mnist(REAL_MNIST)
    assert set(found) == set(MD5)
    images, labels = read_mnist_split(REAL_MNIST, "train")
    assert images.shape == (60_000, 28, 28)
    assert np.bincount(labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    images, labels = read_mnist_split(REAL_MNIST, "test")
    assert images.shape == (10_000, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]


@needs_real
def test_real_mnist_corrupted_copy_fails_checksum(tmp_path):
    for name in MD5:
        shutil.copy(find_file(REAL_MNIST, name), tmp_path / f"{name}.gz")
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[-1] = (data[-1] + 1) % 10
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(FormatError, match="t10k-labels-idx1-ubyte.gz: MD5"):
        verify_mnist(tmp_path)
