"""ClassSetSampler: N distinct classes x m samples, ordered by class, seeded per epoch, DDP-aware.

Ranks are passed explicitly (``num_replicas``, ``rank``): no process group is needed.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.samplers import ClassSetSampler

#: CUB's shape: 200 classes, 5,994 training images (12 x 5 batches in the paper).
CUB_LIKE = torch.arange(200).repeat_interleave(30)[
    torch.randperm(6000, generator=torch.Generator().manual_seed(0))
][:5994]


def epoch_batches(sampler: ClassSetSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler.batches())


def digest(batches: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(batches).encode()).hexdigest()[:16]


def test_batches_are_class_sets():
    sampler = ClassSetSampler(CUB_LIKE, classes_per_batch=12, samples_per_class=5, seed=610)
    assert sampler.num_batches == 99  # floor(5994 / 60), as [OFF]
    for batch in sampler.batches():
        assert len(batch) == 60 and len(set(batch)) == 60
        groups = CUB_LIKE[batch].view(12, 5)
        assert (groups == groups[:, :1]).all()  # rows [i*m, (i+1)*m) share a label
        assert groups[:, 0].unique().numel() == 12  # N distinct classes


def test_one_process_replays_the_batch_sampler_it_replaces():
    """W = 1 draws what the single-process batch sampler it replaced drew (digests taken then)."""
    sampler = ClassSetSampler(CUB_LIKE, 12, 5, seed=610, num_replicas=1, rank=0)
    assert digest(epoch_batches(sampler, 0)) == "a06734369df48fa5"
    assert digest(epoch_batches(sampler, 1)) == "545560086f6e3e05"
    small = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])  # classes 1 and 3 drawn with replacement
    with pytest.warns(UserWarning, match="fewer than 3"):
        sampler = ClassSetSampler(small, 2, 3, num_batches=4, seed=3, num_replicas=1, rank=0)
    assert list(sampler.batches()) == [
        [5, 6, 7, 8, 8, 8],
        [4, 4, 4, 5, 7, 6],
        [8, 8, 8, 4, 3, 3],
        [6, 5, 7, 8, 8, 8],
    ]


def test_loader_batches_are_the_sampler_batches():
    """The flat indices, cut by DataLoader(batch_size=N*m, drop_last=True), are ``batches()``."""
    sampler = ClassSetSampler(CUB_LIKE, 12, 5, seed=610, num_replicas=2, rank=1)
    loader = DataLoader(range(len(CUB_LIKE)), sampler=sampler, batch_size=sampler.batch_size)
    assert len(sampler) == 49 * 60 and len(loader) == 49
    assert [b.tolist() for b in loader] == list(sampler.batches())


def ranks(world: int, **kwargs) -> list[ClassSetSampler]:
    return [ClassSetSampler(num_replicas=world, rank=r, **kwargs) for r in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_are_disjoint_complete_and_group_preserving(world):
    n, m = 7, 4
    per_rank = ranks(world, labels=CUB_LIKE, classes_per_batch=n, samples_per_class=m, seed=5)
    single = ClassSetSampler(CUB_LIKE, world * n, m, seed=5, num_replicas=1, rank=0)
    expected = len(CUB_LIKE) // (world * n * m)
    assert [s.num_batches for s in per_rank] == [expected] * world == [single.num_batches] * world
    for epoch in (0, 1):
        batches = [epoch_batches(s, epoch) for s in per_rank]
        for step, whole in enumerate(epoch_batches(single, epoch)):
            parts = [b[step] for b in batches]
            # complete: the ranks' batches, in rank order, are the batch of N' = W*N classes
            assert sum(parts, []) == whole
            # disjoint: no class (hence no image) is on two ranks at the same step
            classes = [set(CUB_LIKE[p].tolist()) for p in parts]
            assert len(set().union(*classes)) == world * n
            # group-preserving: N distinct classes x m rows, class by class, on every rank
            for part in parts:
                groups = CUB_LIKE[part].view(n, m)
                assert (groups == groups[:, :1]).all() and groups[:, 0].unique().numel() == n
    # set_epoch moves every rank alike: epoch 1 differs from epoch 0 (and matched `single` above)
    assert epoch_batches(per_rank[0], 0) != epoch_batches(per_rank[0], 1)


def test_seeded_per_epoch():
    labels = torch.arange(10).repeat_interleave(8)
    a = ClassSetSampler(labels, 4, 3, seed=1)
    b = ClassSetSampler(labels, 4, 3, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_small_class_with_replacement_warns():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.warns(UserWarning, match="fewer than 3"):
        sampler = ClassSetSampler(labels, 2, 3, num_batches=5)
    assert [len(batch) for batch in sampler.batches()] == [6] * 5


def test_too_many_classes_name_the_flag_and_the_largest_n():
    labels = torch.arange(5).repeat_interleave(2)
    with pytest.raises(
        ValueError, match=r"=6 but .* only 5 classes: set --data.init_args.classes_per_batch=5 "
    ):
        ClassSetSampler(labels, 6, 1, num_replicas=1, rank=0)
    flag = "--data.init_args.classes_per_batch"
    with pytest.raises(ValueError, match=rf"=3 on 2 processes .* needs 6 .* set {flag}=2 or fewer"):
        ClassSetSampler(labels, 3, 1, num_replicas=2, rank=1)
    with pytest.raises(ValueError, match=r"run on at most 5 processes, e.g. --trainer.devices=5"):
        ClassSetSampler(labels, 1, 1, num_replicas=6, rank=0)
    assert ClassSetSampler(labels, 2, 1, num_replicas=2, rank=0).num_batches == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="must be positive"):
        ClassSetSampler([0, 1], 0, 1)
    with pytest.raises(ValueError, match="rank 2 of 2"):
        ClassSetSampler([0, 1], 1, 1, num_replicas=2, rank=2)
