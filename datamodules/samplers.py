"""Samplers of whole batches for one or W ranks: the base, and the class-set samplers, whose
batches are shaped by label:

- ``ClassSetSampler``: N classes x m samples (MinMaxCAM, Ch. 5; the AAE's identity batches);
- ``ClipSetSampler``: P persons x C clips x F frames (the AAE's style macro-batches: a class set
  whose samples are themselves grouped, by clip).

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

    Subclasses set ``batch_size`` and ``num_batches`` (then call ``_set_length``; or all three
    through ``_set_sizes``) and implement ``batches()``.
    """

    batch_size: int
    num_batches: int

    def _set_length(self) -> None:
        self.num_samples = self.num_batches * self.batch_size
        self.total_size = self.num_samples * self.num_replicas

    def _set_sizes(self, batch_size: int, num_batches: int | None, num_items: int) -> None:
        """``batch_size``, ``num_batches`` (default ``num_items // (W * batch_size)``, at least
        1) and the length."""
        self.batch_size = batch_size
        step = self.num_replicas * batch_size
        self.num_batches = num_batches if num_batches is not None else max(num_items // step, 1)
        self._set_length()

    def _steps(self, per_rank: int, groups: int) -> Iterator[tuple[torch.Generator, list[int]]]:
        """Per batch of the epoch: the epoch's generator and W*``per_rank`` distinct groups out of
        ``groups`` (one ``randperm``), rank r's at positions ``[r*per_rank, (r+1)*per_rank)``."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for _ in range(self.num_batches):
            chosen = torch.randperm(groups, generator=generator)[: self.num_replicas * per_rank]
            yield generator, chosen.tolist()

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
        self._set_sizes(classes_per_batch * samples_per_class, num_batches, len(labels))

    def batches(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch, N*m indices each."""
        m, n = self.samples_per_class, self.classes_per_batch
        for generator, chosen in self._steps(n, len(self.groups)):
            batch = []
            for position, c in enumerate(chosen):
                group = self.groups[c]
                picks = pick_within(len(group), m, generator)
                if position // n == self.rank:  # every rank draws all, to stay in step
                    batch.extend(group[picks].tolist())
            yield batch


class ClipSetSampler(WholeBatchSampler):
    """Indices of P x C x F clip-set batches: P distinct persons, C distinct clips of each, F
    frames of each clip, person by person and clip by clip.

    The style macro-batches of the disentangled AAE (5 persons x 4 clips x 5 frames = 100): the
    rows ``[(p*C + c)*F, (p*C + c + 1)*F)`` of a batch are one clip, and the C clips from row
    ``p*C*F`` on belong to one person. Give it to ``DataLoader(dataset, sampler=sampler,
    batch_size=sampler.batch_size, drop_last=True)``; ``batches()`` yields the same batches.

    Draws, ranks and epochs as in ``ClassSetSampler``: epoch e draws from
    ``torch.Generator().manual_seed(seed + e)``, the same on every rank; each step draws W*P
    distinct persons (one ``randperm``), then for each, in that order, C distinct clips (a
    ``randperm`` of its clips) and F frames of each clip (without replacement, in frame order; a
    clip with fewer than F frames is drawn with replacement, with a warning). Rank r keeps the
    persons ``[r*P, (r+1)*P)``, so the ranks' batches hold different persons and, concatenated in
    rank order, are the one-process batch with P' = W*P. Persons with fewer than C clips are never
    drawn (with a warning): their clips could not stand for different styles of one person.

    Args:
        identities: Person label of every dataset index.
        clips: Clip label of every dataset index; a clip belongs to one person.
        persons_per_batch: P, per rank.
        clips_per_person: C.
        frames_per_clip: F.
        num_batches: Batches per epoch on each rank; default ``len(identities) // (W * P*C*F)``,
            at least 1.
        seed: Base seed.
        num_replicas: W; default from ``torch.distributed`` (1 when not initialized).
        rank: r; default from ``torch.distributed`` (0 when not initialized).
        flag: The setting of P, named when there are too few persons.

    Raises:
        ValueError: Labels of different lengths, a non-positive size, or a clip label shared by
            two persons.
        SettingError: Fewer than W*P persons with C or more clips (names ``flag`` and the
            largest P that works).
    """

    def __init__(
        self,
        identities: Sequence[int] | torch.Tensor,
        clips: Sequence[int] | torch.Tensor,
        persons_per_batch: int = 5,
        clips_per_person: int = 4,
        frames_per_clip: int = 5,
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        flag: str = "--data.init_args.persons_per_batch",
    ) -> None:
        num_replicas, rank = replicas_and_rank(num_replicas, rank)
        identities = torch.as_tensor(identities, dtype=torch.long)
        clips = torch.as_tensor(clips, dtype=torch.long)
        super().__init__(identities, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        if identities.shape != clips.shape or identities.ndim != 1:
            raise ValueError(
                f"identities {tuple(identities.shape)} and clips {tuple(clips.shape)} must be "
                "(N,) labels of the same N dataset indices"
            )
        sizes = (persons_per_batch, clips_per_person, frames_per_clip)
        if min(sizes) < 1:
            raise ValueError(f"persons, clips and frames per batch must be positive, got {sizes}")
        self.frames, owner = _clip_groups(identities, clips)
        # the clips (positions in self.frames) of each person, for the persons with C or more
        order = torch.argsort(owner, stable=True)
        persons, counts = torch.unique_consecutive(owner[order], return_counts=True)
        grouped = torch.split(order, counts.tolist())
        self.persons = [g for g in grouped if len(g) >= clips_per_person]
        if len(self.persons) < len(grouped):
            few = persons[counts < clips_per_person].tolist()
            warnings.warn(
                f"{len(few)} persons have fewer than {clips_per_person} clips and are never "
                f"drawn (e.g. {few[:5]})",
                stacklevel=2,
            )
        noun = f"persons with {clips_per_person} or more clips"
        check_enough_classes(persons_per_batch, len(self.persons), num_replicas, flag, noun)
        kept = torch.cat(self.persons) if self.persons else torch.zeros(0, dtype=torch.long)
        short = [c for c in kept.tolist() if len(self.frames[c]) < frames_per_clip]
        if short:
            warnings.warn(
                f"{len(short)} clips have fewer than {frames_per_clip} frames; drawn with "
                "replacement",
                stacklevel=2,
            )
        self.persons_per_batch, self.clips_per_person, self.frames_per_clip = sizes
        self._set_sizes(
            persons_per_batch * clips_per_person * frames_per_clip, num_batches, len(clips)
        )

    def batches(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch, P*C*F indices each."""
        p, c, f = self.persons_per_batch, self.clips_per_person, self.frames_per_clip
        for generator, chosen in self._steps(p, len(self.persons)):
            batch = []
            for position, person in enumerate(chosen):
                own = self.persons[person]
                for clip in own[torch.randperm(len(own), generator=generator)[:c]].tolist():
                    frames = self.frames[clip]
                    picks = pick_within(len(frames), f, generator).sort().values
                    if position // p == self.rank:  # every rank draws all, to stay in step
                        batch.extend(frames[picks].tolist())
            yield batch


def _clip_groups(
    identities: torch.Tensor, clips: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The dataset indices of each clip (ascending) and each clip's person; a clip whose indices
    carry two persons is a ValueError."""
    order = torch.argsort(clips, stable=True)
    _, counts = torch.unique_consecutive(clips[order], return_counts=True)
    owner = identities[order[torch.cumsum(counts, 0) - counts]]  # the first index's person
    mixed = identities[order] != owner.repeat_interleave(counts)
    if mixed.any():
        clip = int(clips[order][mixed][0])
        raise ValueError(f"clip {clip} holds indices of more than one person")
    return list(torch.split(order, counts.tolist())), owner


def pick_within(size: int, m: int, generator: torch.Generator) -> torch.Tensor:
    """m positions in a group of ``size``: without replacement when it has m, else with."""
    if size >= m:
        return torch.randperm(size, generator=generator)[:m]
    return torch.randint(size, (m,), generator=generator)


def check_enough_classes(
    classes_per_batch: int,
    num_classes: int,
    num_replicas: int | None = None,
    flag: str = "--data.init_args.classes_per_batch",
    noun: str = "classes",
) -> None:
    """Raise unless W * ``classes_per_batch`` distinct classes exist (W: the process group's).

    ``ClassSetSampler`` and ``ClipSetSampler`` call it; a DataModule calls it in ``setup`` to
    fail before training.

    Args:
        classes_per_batch: N per rank.
        num_classes: Classes there are.
        num_replicas: W; default from ``torch.distributed``.
        flag: The setting of N, named in the message.
        noun: What the classes are, in the message (``classes``, ``persons with 4 or more
            clips``).
    """
    num_replicas, _ = replicas_and_rank(num_replicas)
    needed = classes_per_batch * num_replicas
    if needed <= num_classes:
        return
    if num_replicas == 1:
        raise SettingError(
            f"{flag}={classes_per_batch} but the training split has only {num_classes} "
            f"{noun}: set {flag}={num_classes} or fewer"
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
        f"{flag}={classes_per_batch} {where} needs {needed} distinct {noun} per step but the "
        f"training split has only {num_classes}: {hint}"
    )
