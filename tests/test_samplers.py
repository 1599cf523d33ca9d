"""ClassSetBatchSampler: N distinct classes x m samples, ordered by class, seeded per epoch."""

from __future__ import annotations

import pytest
import torch

from datamodules.samplers import ClassSetBatchSampler


def test_batches_are_class_sets():
    labels = torch.arange(200).repeat_interleave(30)[
        torch.randperm(6000, generator=torch.Generator().manual_seed(0))
    ]
    sampler = ClassSetBatchSampler(
        labels[:5994], classes_per_batch=12, samples_per_class=5, seed=610
    )
    assert len(sampler) == 99  # floor(5994 / 60), as [OFF]
    for batch in sampler:
        assert len(batch) == 60 and len(set(batch)) == 60
        groups = labels[batch].view(12, 5)
        assert (groups == groups[:, :1]).all()  # rows [i*m, (i+1)*m) share a label
        assert groups[:, 0].unique().numel() == 12  # N distinct classes


def test_seeded_per_epoch():
    labels = torch.arange(10).repeat_interleave(8)
    a = ClassSetBatchSampler(labels, 4, 3, seed=1)
    b = ClassSetBatchSampler(labels, 4, 3, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_small_class_with_replacement_warns():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.warns(UserWarning, match="fewer than 3"):
        sampler = ClassSetBatchSampler(labels, 2, 3, num_batches=5)
    for batch in sampler:
        assert len(batch) == 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="only 2 classes"):
        ClassSetBatchSampler([0, 1], 3, 1)
