"""MNIST-bags for multiple-instance learning (Ilse et al. 2018; Wang, thesis ch. 7, ACCV 2020).

Bags are index arrays into one MNIST split, drawn by a seeded ``np.random.RandomState`` (the
generator Ilse et al. used, so ``balanced=False`` replays their ``dataloader.py`` draw for draw).
Bag lengths are ``max(1, int(N(mean, std)))``. Tasks (thesis section 7.4.1):

- ``single``: positive iff the bag holds a target digit ('9'); balanced alternation by default
  (Ilse's experiments loader: a positive is a random bag that happens to hold a '9', a negative
  is filled from non-'9' images), i.i.d. uniform draws with replacement when ``balanced=False``.
- ``multiple``: positive iff it holds both '3' and '6'; balanced: positives and negatives by
  rejection of whole random bags. ``test_bag_length`` switches the test set to the cardinality
  study: fixed-length bags with exactly one '3' and one '6' (positive) or exactly one of them.
- ``counting``: the label is the number of '9's (regression); i.i.d. draws.
- ``outlier``: pairs of bags of one majority digit ``i mod 10``; the second of each pair has
  min(2, length) positions of one other digit. Label 1 = contains an outlier (the author's code
  used the opposite polarity).

Train bags use the MNIST train split minus its last ``val_fraction`` (the validation bags come
from those held-out images, so no test digit leaks); test bags use t10k. Training bags are
permuted on every fetch (``shuffle_instances``). Under DDP each process evaluates its own val/test
bags, each bag once over all processes (``datamodules.sharding.eval_sampler``). A batch is ``bag``
(B, T, 1, 28, 28) normalized by (0.1307, 0.3081), ``bag_mask`` (B, T) bool, ``bag_label`` (B,)
float (0/1 or the count), and ``instance_labels`` (B, T) long digit labels, -1 on padding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.formats.mnist import read_mnist_split
from datamodules.paths import resolve_root
from datamodules.sharding import eval_sampler

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
Task = Literal["single", "multiple", "counting", "outlier"]
#: task -> (mean length, std, #train, #val, #test bags, default target digits)
TASK_DEFAULTS: dict[str, tuple[float, float, int, int, int, list[int]]] = {
    "single": (10, 2, 200, 200, 1000, [9]),
    "multiple": (12, 2, 1000, 200, 1000, [3, 6]),
    "counting": (15, 2, 1000, 200, 1000, [9]),
    "outlier": (6, 1, 10000, 1000, 2000, []),
}


@dataclass
class Bags:
    """Bags of one split: ``indices[i]`` index the split images, ``labels[i]`` is the bag label."""

    indices: list[np.ndarray]
    labels: np.ndarray

    def digest(self) -> str:
        """SHA-256 of the concatenated index arrays (a fingerprint for determinism tests)."""
        return hashlib.sha256(np.concatenate(self.indices).astype(np.int64).tobytes()).hexdigest()


def bag_length(r: np.random.RandomState, mean: float, std: float) -> int:
    """``int(N(mean, std))`` truncated toward zero, at least 1 (Ilse et al.)."""
    return max(1, int(r.normal(mean, std, 1)[0]))


def iid_bags(r, pool: np.ndarray, n: int, mean: float, std: float) -> list[np.ndarray]:
    """Per bag: a length, then uniform draws with replacement from ``pool`` (Ilse's dataloader)."""
    return [pool[r.randint(0, len(pool), bag_length(r, mean, std))] for _ in range(n)]


def _rejected_bag(r, pool, digits, mean, std, want_positive, rule) -> np.ndarray:
    while True:  # redraw length and contents until the bag has the wanted label
        bag = pool[r.randint(0, len(pool), bag_length(r, mean, std))]
        if rule(digits[bag]) == want_positive:
            return bag


def balanced_bags(r, pool, digits, n, mean, std, targets, task) -> list[np.ndarray]:
    """Alternating positive / negative bags (even i positive) for ``single`` or ``multiple``."""
    rule = _bag_rule(task, targets)
    non_target = pool[~np.isin(digits[pool], targets)]
    bags = []
    for i in range(n):
        if i % 2 == 0 or task == "multiple":
            bags.append(_rejected_bag(r, pool, digits, mean, std, i % 2 == 0, rule))
        else:  # single-digit negative: the drawn length filled with non-target images
            bags.append(non_target[r.randint(0, len(non_target), bag_length(r, mean, std))])
    return bags


def outlier_bags(r, pool, digits, n, mean, std) -> tuple[list[np.ndarray], np.ndarray]:
    """``n // 2`` pairs (normal, outlier) with majority digit ``pair mod 10``; labels 0 / 1."""
    by_digit = [pool[digits[pool] == d] for d in range(10)]
    bags, labels = [], []
    for i in range(n // 2):
        length, d = bag_length(r, mean, std), i % 10
        bags.append(r.choice(by_digit[d], length, replace=False))
        positions = r.permutation(length)[:2]
        other = [o for o in range(10) if o != d][r.randint(0, 9)]
        bag_digits = np.full(length, d)
        bag_digits[positions] = other
        bag = np.empty(length, dtype=np.int64)
        for label in (d, other):
            slots = np.flatnonzero(bag_digits == label)
            bag[slots] = r.choice(by_digit[label], len(slots), replace=False)
        bags.append(bag)
        labels += [0.0, 1.0]
    return bags, np.asarray(labels, dtype=np.float32)


def cardinality_bags(r, pool, digits, n, length, targets=(3, 6)) -> list[np.ndarray]:
    """Fixed-length bags: even i hold exactly one of each target, odd i exactly one target."""
    if length < 2:
        raise ValueError(f"cardinality bags need length >= 2, got {length}")
    rest = pool[~np.isin(digits[pool], targets)]
    bags = []
    for i in range(n):
        chosen = list(targets) if i % 2 == 0 else [targets[r.randint(0, len(targets))]]
        special = [pool[digits[pool] == t][r.randint(0, (digits[pool] == t).sum())] for t in chosen]
        bag = np.concatenate([special, rest[r.randint(0, len(rest), length - len(special))]])
        bags.append(bag[r.permutation(length)])
    return bags


def _bag_rule(task: str, targets: list[int]):
    if task == "counting":
        return lambda d: float(np.isin(d, targets).sum())
    if task == "multiple":
        return lambda d: float(all((d == t).any() for t in targets))
    return lambda d: float(np.isin(d, targets).any())


def make_bags(r, pool, digits, task, n, mean, std, targets, balanced=True) -> Bags:
    """Draw ``n`` bags of ``task`` from ``pool`` (indices into ``digits``); see the module doc."""
    if task == "outlier":
        indices, labels = outlier_bags(r, pool, digits, n, mean, std)
        return Bags(indices, labels)
    if task in ("single", "multiple") and balanced:
        indices = balanced_bags(r, pool, digits, n, mean, std, targets, task)
    else:
        indices = iid_bags(r, pool, n, mean, std)
    rule = _bag_rule(task, targets)
    return Bags(indices, np.asarray([rule(digits[b]) for b in indices], dtype=np.float32))


class MNISTBagsDataset(Dataset):
    """Bags over uint8 images (N, 28, 28); one bag dict per item, permuted if ``shuffle``."""

    def __init__(self, images: np.ndarray, digits: np.ndarray, bags: Bags, shuffle: bool) -> None:
        self.images = torch.from_numpy(images)
        self.digits = torch.from_numpy(digits.astype(np.int64))
        self.bags, self.shuffle = bags, shuffle

    def __len__(self) -> int:
        return len(self.bags.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = torch.from_numpy(self.bags.indices[i])
        if self.shuffle:
            index = index[torch.randperm(len(index))]
        bag = (self.images[index].float() / 255.0 - MNIST_MEAN) / MNIST_STD
        return {
            "bag": bag[:, None],
            "instance_labels": self.digits[index],
            "bag_label": torch.tensor(float(self.bags.labels[i])),
            "index": torch.tensor(i),
        }


def collate_bags(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad bags to the longest: ``bag`` (B, T, 1, 28, 28), ``bag_mask`` (B, T), labels -1 padded;
    ``index`` (B,) the bags' dataset indices."""
    lengths = [len(item["instance_labels"]) for item in items]
    size, longest = len(items), max(lengths)
    bag = items[0]["bag"].new_zeros(size, longest, *items[0]["bag"].shape[1:])
    mask = torch.zeros(size, longest, dtype=torch.bool)
    instance_labels = torch.full((size, longest), -1, dtype=torch.long)
    for b, (item, length) in enumerate(zip(items, lengths, strict=True)):
        bag[b, :length], mask[b, :length] = item["bag"], True
        instance_labels[b, :length] = item["instance_labels"]
    bag_label = torch.stack([item["bag_label"] for item in items])
    return {
        "bag": bag,
        "bag_mask": mask,
        "bag_label": bag_label,
        "instance_labels": instance_labels,
        "index": torch.stack([item["index"] for item in items]),
    }


class MNISTBagsDataModule(LightningDataModule):
    """MNIST-bags for one of the thesis's four MIL tasks (Table 7.1).

    Args:
        root: Folder with the MNIST IDX files (raw or .gz, flat or ``MNIST/raw``); default
            ``resolve_root(None, "mnist")``.
        task: ``single``, ``multiple``, ``counting`` (regression) or ``outlier``.
        target_digits: Digits that make a bag positive (or are counted); None = task default
            ([9], [3, 6], [9]; unused for ``outlier``).
        mean_bag_length: Mean m of the normal length distribution; None = task default.
        std_bag_length: Its standard deviation sigma (Ilse's "var" argument); None = task default.
        num_train_bags / num_val_bags / num_test_bags: Numbers of bags; None = task defaults.
        balanced: Balanced alternation (Ilse's experiments loader) for ``single``/``multiple``;
            False draws i.i.d. bags like Ilse's ``dataloader.py``.
        test_bag_length: ``multiple`` only: test on fixed-length cardinality-study bags.
        shuffle_instances: Permute each training bag on every fetch (thesis section 7.4.2).
        val_fraction: Trailing fraction of the train split reserved for validation bags.
        seed: Bag-generation seed (train ``seed``, val ``[seed, 1]``, test ``[seed, 2]``).
        batch_size: Bags per batch (1 in the paper); larger batches are padded with a mask.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        root: str | None = None,
        task: Task = "single",
        target_digits: list[int] | None = None,
        mean_bag_length: float | None = None,
        std_bag_length: float | None = None,
        num_train_bags: int | None = None,
        num_val_bags: int | None = None,
        num_test_bags: int | None = None,
        balanced: bool = True,
        test_bag_length: int | None = None,
        shuffle_instances: bool = True,
        val_fraction: float = 1 / 6,
        seed: int = 1,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if task not in TASK_DEFAULTS:
            raise ValueError(f"task must be one of {sorted(TASK_DEFAULTS)}, got {task!r}")
        if test_bag_length is not None and task != "multiple":
            raise ValueError("test_bag_length (cardinality study) is defined for task='multiple'")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        mean, std, n_train, n_val, n_test, targets = TASK_DEFAULTS[task]
        pick = lambda value, default: default if value is None else value  # noqa: E731
        self.mean_bag_length = float(pick(mean_bag_length, mean))
        self.std_bag_length = float(pick(std_bag_length, std))
        self.num_bags = {
            "train": pick(num_train_bags, n_train),
            "val": pick(num_val_bags, n_val) if val_fraction > 0 else 0,
            "test": pick(num_test_bags, n_test),
        }
        self.target_digits = list(pick(target_digits, targets))
        self.splits: dict[str, MNISTBagsDataset] = {}

    @property
    def is_regression(self) -> bool:
        """True for ``counting``: the bag label is a count, the model must regress it."""
        return self.hparams.task == "counting"

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        root = resolve_root(self.hparams.root, "mnist")
        train_images, train_digits = read_mnist_split(root, "train")
        test_images, test_digits = read_mnist_split(root, "test")
        n_fit = len(train_digits) - int(round(self.hparams.val_fraction * len(train_digits)))
        seed = self.hparams.seed
        pools = {
            "train": (np.arange(n_fit), train_images, train_digits, np.random.RandomState(seed)),
            "val": (
                np.arange(n_fit, len(train_digits)),
                train_images,
                train_digits,
                np.random.RandomState([seed, 1]),
            ),
            "test": (
                np.arange(len(test_digits)),
                test_images,
                test_digits,
                np.random.RandomState([seed, 2]),
            ),
        }
        for split, (pool, images, digits, r) in pools.items():
            if self.num_bags[split] == 0:
                continue
            bags = self._make(split, r, pool, digits)
            self.splits[split] = MNISTBagsDataset(
                images, digits, bags, shuffle=split == "train" and self.hparams.shuffle_instances
            )

    def _make(self, split, r, pool, digits) -> Bags:
        n, hp = self.num_bags[split], self.hparams
        if split == "test" and hp.test_bag_length is not None:
            indices = cardinality_bags(r, pool, digits, n, hp.test_bag_length, self.target_digits)
            rule = _bag_rule("multiple", self.target_digits)
            return Bags(indices, np.asarray([rule(digits[b]) for b in indices], np.float32))
        return make_bags(
            r,
            pool,
            digits,
            hp.task,
            n,
            self.mean_bag_length,
            self.std_bag_length,
            self.target_digits,
            hp.balanced,
        )

    def instances(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Every distinct image used by ``split``'s bags: normalized (N, 1, 28, 28), digits (N,)."""
        dataset = self.splits[split]
        index = torch.from_numpy(np.unique(np.concatenate(dataset.bags.indices)))
        images = (dataset.images[index].float() / 255.0 - MNIST_MEAN) / MNIST_STD
        return images[:, None], dataset.digits[index]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val") if "val" in self.splits else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        dataset = self.splits[split]
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else eval_sampler(dataset, split),
            collate_fn=collate_bags,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )
