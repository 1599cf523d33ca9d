"""Batch samplers that shape a batch by label: the N x m class-set sampler (MinMaxCAM, Ch. 5)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class ClassSetBatchSampler(Sampler[list[int]]):
    """Batches of N distinct classes with m samples each, ordered class by class.

    Each batch draws ``classes_per_batch`` (N) classes uniformly without replacement, then
    ``samples_per_class`` (m) indices of each class without replacement; rows ``[i*m, (i+1)*m)``
    share a label. A class with fewer than m samples is drawn with replacement (with a warning).
    The draws of epoch e come from ``torch.Generator().manual_seed(seed + e)``, so a run is
    reproducible; call ``set_epoch`` (Lightning does for samplers that have it) to advance.

    Args:
        labels: Class label of every dataset index.
        classes_per_batch: N.
        samples_per_class: m.
        num_batches: Batches per epoch; default ``len(labels) // (N * m)`` (99 for CUB, 12 x 5).
        seed: Base seed.
    """

    def __init__(
        self,
        labels: Sequence[int] | torch.Tensor,
        classes_per_batch: int,
        samples_per_class: int,
        num_batches: int | None = None,
        seed: int = 0,
    ) -> None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        classes = labels.unique()
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ValueError("classes_per_batch and samples_per_class must be positive")
        if classes_per_batch > len(classes):
            raise ValueError(
                f"{classes_per_batch} classes per batch but only {len(classes)} classes"
            )
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
        batch = classes_per_batch * samples_per_class
        self.num_batches = num_batches if num_batches is not None else max(len(labels) // batch, 1)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch`` (seed + epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        m = self.samples_per_class
        for _ in range(self.num_batches):
            chosen = torch.randperm(len(self.groups), generator=generator)[: self.classes_per_batch]
            batch = []
            for c in chosen.tolist():
                group = self.groups[c]
                if len(group) >= m:
                    picks = torch.randperm(len(group), generator=generator)[:m]
                else:
                    picks = torch.randint(len(group), (m,), generator=generator)
                batch.extend(group[picks].tolist())
            yield batch
