"""datamodules.round_robin: RandomBatches draws distinct indices per step, disjoint across ranks,
seeded per epoch; RoundRobinBatches takes the sources in turn with their ConcatDataset offsets and
serves one DataLoader whose batches each come from one source."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from datamodules.round_robin import RandomBatches, RoundRobinBatches
from datamodules.samplers import ClassSetSampler


def test_random_batches_are_distinct_seeded_and_cover_the_items():
    sampler = RandomBatches(10, 4, num_batches=5, seed=3, num_replicas=1, rank=0)
    batches = list(sampler.batches())
    assert len(batches) == 5 and all(len(b) == 4 and len(set(b)) == 4 for b in batches)
    assert batches == list(sampler.batches())  # same epoch, same draw
    sampler.set_epoch(1)
    assert list(sampler.batches()) != batches
    # two steps of 4 from one permutation of 10 (8 distinct), then a fresh permutation
    assert len(set(batches[0]) | set(batches[1])) == 8
    assert len(list(iter(sampler))) == len(sampler) == 20


def test_random_batches_ranks_draw_disjoint_slices_of_one_step():
    ranks = [RandomBatches(12, 3, seed=1, num_replicas=2, rank=r) for r in range(2)]
    assert ranks[0].num_batches == ranks[1].num_batches == 2  # 12 // (2 * 3)
    for a, b in zip(ranks[0].batches(), ranks[1].batches(), strict=True):
        assert set(a).isdisjoint(b)
    single = RandomBatches(12, 6, seed=1, num_replicas=1, rank=0)
    joined = [a + b for a, b in zip(ranks[0].batches(), ranks[1].batches(), strict=True)]
    assert joined == list(single.batches())  # rank batches concatenate to the W*B draw


def test_random_batches_refuse_a_source_too_small():
    with pytest.raises(ValueError, match="needs at least 8"):
        RandomBatches(7, 4, num_replicas=2, rank=0)


class Source(Dataset):
    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        return {"source": self.name, "index": i}


def test_round_robin_takes_sources_in_turn_with_offsets():
    a, b = Source("a", 10), Source("b", 6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    sources = [
        RandomBatches(len(a), 4, num_batches=3, num_replicas=1, rank=0),
        ClassSetSampler(labels, 2, 2, num_batches=3, num_replicas=1, rank=0),
    ]
    sampler = RoundRobinBatches(sources, offsets=[0, len(a)])
    assert len(sampler) == 6 * 4 and sampler.num_batches == 6
    batches = list(sampler.batches())
    assert all(max(x) < 10 for x in batches[0::2]) and all(min(x) >= 10 for x in batches[1::2])
    loader = DataLoader(ConcatDataset([a, b]), sampler=sampler, batch_size=4, drop_last=True)
    got = list(loader)
    assert [set(batch["source"]) for batch in got] == [{"a"}, {"b"}] * 3
    for batch in got[1::2]:  # class sets: pairs share a label
        labels_seen = labels[batch["index"]]
        assert labels_seen[0] == labels_seen[1] and labels_seen[2] == labels_seen[3]
    sampler.set_epoch(2)
    assert sources[0].epoch == sources[1].epoch == 2
    assert list(sampler.batches()) != batches


def test_round_robin_refuses_mismatched_sources():
    one = RandomBatches(8, 4, num_batches=2, num_replicas=1, rank=0)
    other = RandomBatches(8, 2, num_batches=2, num_replicas=1, rank=0)
    longer = RandomBatches(8, 4, num_batches=3, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="batch_size"):
        RoundRobinBatches([one, other], [0, 8])
    with pytest.raises(ValueError, match="num_batches"):
        RoundRobinBatches([one, longer], [0, 8])
    with pytest.raises(ValueError, match="one offset per source"):
        RoundRobinBatches([one], [0, 8])
