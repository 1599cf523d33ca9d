"""Samplers of whole batches for one or W ranks: the base, and the N x m class-set sampler
(MinMaxCAM, Ch. 5; the AAE's identity batches), whose batches are shaped by label.

A whole-batch sampler decides batches, not single indices: ``batches()`` yields this rank's
batches of the epoch as lists, and iterating it yields their indices back to back, so a
``DataLoader(dataset, sampler=s, batch_size=s.batch_size, drop_last=True)`` cuts exactly those
batches. They subclass ``DistributedSampler`` so that Lightning does not replace them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

from datamodules.formats.errors import SettingError
from datamodules.sharding import replicas_and_rank


class WholeBatchSampler(DistributedSampler):
    """Base of the whole-batch samplers: ``num_batches`` batches of ``batch_size`` per rank.

    Subclasses set ``batch_size`` and ``num_batches`` (then call ``_set_length``) and implement
    ``batches()``.
    """

    batch_size: int
    num_batches: int

    def _set_length(self) -> None:
        self.num_samples = self.num_batches * self.batch_size
        self.total_size = self.num_samples * self.num_replicas

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        return (index for batch in self.batches() for index in batch)

    def batches(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch."""
        raise NotImplementedError


class ClassSetSampler(WholeBatchSampler):
    """Indices of N x m class-set batches: N distinct classes, m samples each, class by class.

    Give it to ``DataLoader(dataset, sampler=sampler, batch_size=sampler.batch_size,
    drop_last=True)``: every ``batch_size`` consecutive indices are one batch, whose rows
    ``[i*m, (i+1)*m)`` share a label. ``batches()`` yields the same batches as lists.

    The draws of epoch e come from ``torch.Generator().manual_seed(seed + e)``, the same on every
    rank; ``set_epoch`` (Lightning calls it) selects the epoch. With W ranks, each step draws W*N
    distinct classes (one ``randperm`` of the classes), then m indices of each of them in that
    order (without replacement; a class with fewer than m samples is drawn with replacement, with
    a warning); rank r keeps the classes ``[r*N, (r+1)*N)`` with their m indices. Hence:

    - W = 1 is the single-process class-set sampler;
    - at every step the ranks' batches hold different classes (disjoint, unless a small class
      repeats its own samples), and concatenated in rank order they are the single-process batch
      with N' = W*N: DDP on W ranks trains on W-times larger class sets;
    - every rank yields ``num_batches`` batches.

    It subclasses ``torch.utils.data.DistributedSampler`` so that Lightning does not replace it
    (``use_distributed_sampler`` either way).

    Args:
        labels: Class label of every dataset index.
        classes_per_batch: N, per rank.
        samples_per_class: m.
        num_batches: Batches per epoch on each rank; default ``len(labels) // (W * N * m)``, at
            least 1 (99 for CUB, 12 x 5, one process).
        seed: Base seed.
        num_replicas: W; default from ``torch.distributed`` (1 when not initialized).
        rank: r; default from ``torch.distributed`` (0 when not initialized).

    Raises:
        SettingError: W*N exceeds the number of classes (names
            ``--data.init_args.classes_per_batch`` and the largest N that works on W ranks).
    """

    def __init__(
        self,
        labels: Sequence[int] | torch.Tensor,
        classes_per_batch: int,
        samples_per_class: int,
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        num_replicas, rank = replicas_and_rank(num_replicas, rank)
        labels = torch.as_tensor(labels, dtype=torch.long)
        super().__init__(labels, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ValueError("classes_per_batch and samples_per_class must be positive")
        classes = labels.unique()
        check_enough_classes(classes_per_batch, len(classes), num_replicas)
        self.groups = [torch.nonzero(labels == c).flatten() for c in classes]
        small = [
            int(c) for c, g in zip(classes, self.groups, strict=True) if len(g) < samples_per_class
        ]
        if small:
            warnings.warn(
                f"classes {small[:5]} have fewer than {samples_per_class} samples; "
                "drawn with replacement",
                stacklevel=2,
            )
        self.classes_per_batch = classes_per_batch
        self.samples_per_class = samples_per_class
        self.batch_size = classes_per_batch * samples_per_class
        step = num_replicas * self.batch_size
        self.num_batches = num_batches if num_batches is not None else max(len(labels) // step, 1)
        self._set_length()

    def batches(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch, N*m indices each."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        m, n = self.samples_per_class, self.classes_per_batch
        for _ in range(self.num_batches):
            chosen = torch.randperm(len(self.groups), generator=generator)[: self.num_replicas * n]
            batch = []
            for position, c in enumerate(chosen.tolist()):
                group = self.groups[c]
                if len(group) >= m:
                    picks = torch.randperm(len(group), generator=generator)[:m]
                else:
                    picks = torch.randint(len(group), (m,), generator=generator)
                if position // n == self.rank:  # every rank draws all, to stay in step
                    batch.extend(group[picks].tolist())
            yield batch


def check_enough_classes(
    classes_per_batch: int, num_classes: int, num_replicas: int | None = None
) -> None:
    """Raise unless W * ``classes_per_batch`` distinct classes exist (W: the process group's).

    ``ClassSetSampler`` calls it; a DataModule calls it in ``setup`` to fail before training.
    """
    num_replicas, _ = replicas_and_rank(num_replicas)
    needed = classes_per_batch * num_replicas
    if needed <= num_classes:
        return
    flag = "--data.init_args.classes_per_batch"
    if num_replicas == 1:
        raise SettingError(
            f"{flag}={classes_per_batch} but the training split has only {num_classes} "
            f"classes: set {flag}={num_classes} or fewer"
        )
    where = f"on {num_replicas} processes (each draws its own classes)"
    if num_classes < num_replicas:
        hint = (
            f"run on at most {num_classes} processes, e.g. "
            f"--trainer.devices={num_classes} --trainer.num_nodes=1"
        )
    else:
        hint = f"set {flag}={num_classes // num_replicas} or fewer"
    raise SettingError(
        f"{flag}={classes_per_batch} {where} needs {needed} distinct classes per step but the "
        f"training split has only {num_classes}: {hint}"
    )
