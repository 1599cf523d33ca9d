"""MNIST-bags generators and DataModule: label rules, length statistics, determinism, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.mnist_bags import (
    MNISTBagsDataModule,
    bag_length,
    cardinality_bags,
    collate_bags,
    iid_bags,
    make_bags,
)
from datamodules.synthetic.mnist import write_synthetic_mnist

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
DIGITS = np.random.default_rng(0).integers(0, 10, 5000)  # a fake split: digit of each image
POOL = np.arange(len(DIGITS))


@pytest.fixture(scope="module")
def twin_root(tmp_path_factory):
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist_twin"))


def expected_length(mean: float, std: float) -> float:
    """E[max(1, int(N(mean, std)))] by a large independent Monte Carlo sample."""
    draws = np.random.default_rng(123).normal(mean, std, 2_000_000)
    return float(np.maximum(1, np.trunc(draws)).mean())


def test_iid_bags_replay_ilse_random_state():
    bags = iid_bags(np.random.RandomState(7), POOL, 5, 10, 2)
    r = np.random.RandomState(7)  # Ilse's dataloader: a normal draw, then randint, per bag
    for bag in bags:
        length = max(1, int(r.normal(10, 2, 1)[0]))
        np.testing.assert_array_equal(bag, r.randint(0, len(POOL), length))


@pytest.mark.parametrize(
    ("task", "mean", "std"), [("single", 10, 2), ("single", 10, 8), ("counting", 15, 2)]
)
def test_iid_length_distribution(task, mean, std):
    bags = make_bags(np.random.RandomState(0), POOL, DIGITS, task, 1000, mean, std, [9], False)
    lengths = np.array([len(b) for b in bags.indices])
    assert lengths.min() >= 1
    assert abs(lengths.mean() - expected_length(mean, std)) < 0.3
    assert abs(lengths.std() - std) < 0.25 * std + 0.3 if std == 2 else lengths.std() > 5


@pytest.mark.parametrize(
    ("task", "targets"), [("single", [9]), ("multiple", [3, 6]), ("counting", [9]), ("outlier", [])]
)
def test_bag_labels_follow_task_rules(task, targets):
    mean, std = (6, 1) if task == "outlier" else (10, 2)
    bags = make_bags(np.random.RandomState(1), POOL, DIGITS, task, 400, mean, std, targets)
    for i, (index, label) in enumerate(zip(bags.indices, bags.labels, strict=True)):
        digits = DIGITS[index]
        if task == "single":
            assert label == float((digits == 9).any())
        elif task == "multiple":
            assert label == float((digits == 3).any() and (digits == 6).any())
        elif task == "counting":
            assert label == (digits == 9).sum()
        else:
            majority = (i // 2) % 10
            others = digits[digits != majority]
            assert label == float(i % 2 == 1) and len(others) == label * min(2, len(digits))
            assert len(set(others.tolist())) <= 1
    if task != "counting":
        assert bags.labels.mean() == 0.5  # balanced alternation / pairs
    else:
        assert bags.labels.max() >= 3


def test_unbalanced_single_task_positive_rate_matches_theory():
    bags = make_bags(np.random.RandomState(2), POOL, DIGITS, "single", 2000, 10, 2, [9], False)
    lengths = np.array([len(b) for b in bags.indices])
    p9 = (DIGITS == 9).mean()
    assert abs(bags.labels.mean() - np.mean(1 - (1 - p9) ** lengths)) < 0.03


def test_cardinality_bags_have_exactly_one_of_each_target():
    bags = cardinality_bags(np.random.RandomState(3), POOL, DIGITS, 40, 50)
    for i, bag in enumerate(bags):
        digits = DIGITS[bag]
        assert len(bag) == 50
        counts = ((digits == 3).sum(), (digits == 6).sum())
        assert counts == (1, 1) if i % 2 == 0 else sorted(counts) == [0, 1]


def test_bag_length_clamps_to_one():
    r = np.random.RandomState(0)
    assert min(bag_length(r, 0.5, 3) for _ in range(200)) == 1


def test_collate_pads_and_masks():
    items = [
        {
            "bag": torch.full((n, 1, 28, 28), float(n)),
            "instance_labels": torch.arange(n),
            "bag_label": torch.tensor(1.0),
            "index": torch.tensor(10 + n),
        }
        for n in (3, 1, 5)
    ]
    batch = collate_bags(items)
    assert batch["bag"].shape == (3, 5, 1, 28, 28)
    assert batch["bag_mask"].sum(1).tolist() == [3, 1, 5]
    assert batch["index"].tolist() == [13, 11, 15]
    assert batch["instance_labels"][1].tolist() == [0, -1, -1, -1, -1]
    assert batch["bag"][0, 3:].abs().sum() == 0 and batch["bag"][0, :3].eq(3.0).all()


def test_datamodule_deterministic_no_leak_and_shuffles(twin_root):
    def build(seed):
        dm = MNISTBagsDataModule(
            root=str(twin_root),
            task="multiple",
            num_train_bags=60,
            num_val_bags=20,
            num_test_bags=20,
            seed=seed,
            batch_size=4,
        )
        dm.setup("fit")
        return dm

    a, b, c = build(0), build(0), build(1)
    for split in ("train", "val", "test"):
        assert a.splits[split].bags.digest() == b.splits[split].bags.digest()
        assert a.splits[split].bags.digest() != c.splits[split].bags.digest()
    n_train = len(a.splits["train"].digits)
    n_fit = n_train - round(n_train / 6)
    assert max(map(np.max, a.splits["train"].bags.indices)) < n_fit
    assert min(map(np.min, a.splits["val"].bags.indices)) >= n_fit
    assert a.splits["test"].images.shape[0] < n_train  # test bags index the t10k split
    torch.manual_seed(0)
    first, second = a.splits["train"][0], a.splits["train"][0]
    assert sorted(first["instance_labels"].tolist()) == sorted(second["instance_labels"].tolist())
    fetches = [a.splits["train"][0]["bag"] for _ in range(5)]
    assert any(not torch.equal(fetches[0], f) for f in fetches[1:])  # permuted per fetch
    assert torch.equal(a.splits["test"][0]["bag"], a.splits["test"][0]["bag"])
    batch = next(iter(a.train_dataloader()))
    assert batch["bag"].shape[0] == 4 and batch["bag_mask"].dtype == torch.bool
    assert abs(float(batch["bag"][batch["bag_mask"]].mean())) < 1.0  # normalized


def test_datamodule_instances_and_cardinality(twin_root):
    dm = MNISTBagsDataModule(
        root=str(twin_root),
        task="multiple",
        num_train_bags=20,
        num_val_bags=4,
        num_test_bags=10,
        test_bag_length=20,
    )
    dm.setup("test")
    images, digits = dm.instances("test")
    assert images.shape[1:] == (1, 28, 28) and len(images) == len(digits)
    assert all(len(b) == 20 for b in dm.splits["test"].bags.indices)
    with pytest.raises(ValueError, match="test_bag_length"):
        MNISTBagsDataModule(task="single", test_bag_length=20)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST not found at {REAL_MNIST}")
@pytest.mark.parametrize("task", ["single", "multiple", "counting", "outlier"])
def test_real_mnist_bag_statistics(task):
    dm = MNISTBagsDataModule(
        root=str(REAL_MNIST), task=task, num_train_bags=1000, num_val_bags=10, num_test_bags=200
    )
    dm.setup("fit")
    bags = dm.splits["train"].bags
    lengths = np.array([len(b) for b in bags.indices])
    if task == "counting":  # i.i.d.: length statistics and the mean count of '9's
        assert abs(lengths.mean() - expected_length(15, 2)) < 0.3
        assert abs(bags.labels.mean() - lengths.mean() * 5949 / 60000) < 0.15
    else:
        assert bags.labels.mean() == 0.5
    if task == "outlier":
        assert abs(lengths.mean() - expected_length(6, 1)) < 0.3
