"""datamodules.verification_pairs: same- and different-identity pairs for face verification."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

import datamodules.verification_pairs as module
from datamodules.verification_pairs import VerificationPairs, pair_capacity, verification_pairs


def _identities(sizes: list[int], seed: int = 0) -> torch.Tensor:
    """Identity ``10 * k + 3`` repeated ``sizes[k]`` times, items in a shuffled order."""
    ids = torch.cat([torch.full((n,), 10 * k + 3) for k, n in enumerate(sizes)])
    return ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))]


def _all_pairs(identities: torch.Tensor, same: bool) -> set[tuple[int, int]]:
    """Brute force: every unordered pair i < j of one (or of different) identity."""
    ids = identities.tolist()
    return {
        (i, j) for i, j in itertools.combinations(range(len(ids)), 2) if (ids[i] == ids[j]) == same
    }


def _check_valid(identities: torch.Tensor, pairs: VerificationPairs, same: int, different: int):
    index, labels = pairs
    assert index.shape == (same + different, 2) and index.dtype == torch.long
    assert labels.dtype == torch.bool
    assert labels.tolist() == [True] * same + [False] * different
    assert bool((index[:, 0] < index[:, 1]).all())  # no self pair, canonical order
    assert bool((index >= 0).all() and (index < len(identities)).all())
    a, b = identities[index[:, 0]], identities[index[:, 1]]
    assert bool((a[:same] == b[:same]).all())
    assert bool((a[same:] != b[same:]).all())
    rows = [tuple(r) for r in index.tolist()]
    assert len(set(rows)) == len(rows)  # no repeated pair


SIZES = [2, 3, 5, 8, 1, 4, 1, 6]  # two identities with a single image


def test_pairs_are_valid_and_counted():
    identities = _identities(SIZES)
    pairs = verification_pairs(identities, same=20, different=30, seed=0)
    _check_valid(identities, pairs, 20, 30)


def test_large_split_uses_the_sampled_path_and_stays_valid():
    # 300 identities x 10 images: ~4.5M cross pairs, beyond the enumeration limit
    identities = _identities([10] * 300, seed=1)
    pairs = verification_pairs(identities, same=500, different=500, seed=3)
    _check_valid(identities, pairs, 500, 500)
    # 500 same pairs over 300 identities: round-robin gives each one or two
    per_identity = Counter(identities[pairs.index[:500, 0]].tolist())
    assert len(per_identity) == 300 and set(per_identity.values()) == {1, 2}


def test_deterministic_per_seed():
    identities = _identities(SIZES)
    first = verification_pairs(identities, same=15, different=15, seed=7)
    again = verification_pairs(identities, same=15, different=15, seed=7)
    other = verification_pairs(identities, same=15, different=15, seed=8)
    assert torch.equal(first.index, again.index) and torch.equal(first.same, again.same)
    assert not torch.equal(first.index, other.index)


def test_exhausting_the_split_gives_every_pair_once():
    identities = _identities(SIZES)
    same_all, different_all = _all_pairs(identities, True), _all_pairs(identities, False)
    # sizes 2,3,5,8,1,4,1,6: 1 + 3 + 10 + 28 + 0 + 6 + 0 + 15 = 63 same pairs; 30 items give
    # 435 pairs in all, so 435 - 63 = 372 different pairs
    assert (len(same_all), len(different_all)) == (63, 372)
    pairs = verification_pairs(identities, same=63, different=372, seed=1)
    rows = {tuple(r) for r in pairs.index.tolist()}
    assert {tuple(r) for r in pairs.index[:63].tolist()} == same_all
    assert rows - same_all == different_all


def test_impossible_requests_say_how_many_there_are():
    identities = _identities(SIZES)
    with pytest.raises(ValueError, match=r"64 same-identity pairs.*only 63 .*6 identities"):
        verification_pairs(identities, same=64, different=0)
    with pytest.raises(ValueError, match=r"373 different-identity pairs.*only 372"):
        verification_pairs(identities, same=0, different=373)
    with pytest.raises(ValueError, match="only 0"):  # one identity: nothing differs
        verification_pairs(torch.zeros(5, dtype=torch.long), same=1, different=1)
    with pytest.raises(ValueError, match="1-D integer"):
        verification_pairs(torch.zeros(5), same=1, different=0)
    with pytest.raises(ValueError, match="must be >= 0"):
        verification_pairs(identities, same=-1, different=0)


def test_same_pairs_go_round_robin_over_identities():
    # sizes 2, 3, 5, 8 hold 1, 3, 10, 28 pairs. Rounds of one pair each: 4 pairs (the size-2
    # identity is then spent), 3 more (7), 3 more (10): quotas 1, 3, 3, 3 in any visiting order
    identities = _identities([2, 3, 5, 8])
    for seed in range(5):
        pairs = verification_pairs(identities, same=10, different=0, seed=seed)
        per_identity = Counter(identities[pairs.index[:, 0]].tolist())
        assert [per_identity[10 * k + 3] for k in range(4)] == [1, 3, 3, 3]
    # an 11th pair goes to one of the two identities that still have pairs: 1, 3, 4, 3 or 1, 3, 3, 4
    pairs = verification_pairs(identities, same=11, different=0, seed=0)
    counts = Counter(identities[pairs.index[:, 0]].tolist())
    assert sorted(counts.values()) == [1, 3, 3, 4] and counts[3] == 1 and counts[13] == 3


def test_every_identity_with_two_images_can_be_chosen():
    identities = _identities(SIZES)
    chosen = Counter()
    for seed in range(200):
        pairs = verification_pairs(identities, same=1, different=0, seed=seed)
        chosen[int(identities[pairs.index[0, 0]])] += 1
    # one pair: a uniform identity among the 6 with >= 2 images (200 / 6 = 33 expected each);
    # never the two single-image identities (43, 63)
    assert set(chosen) == {3, 13, 23, 33, 53, 73}
    assert min(chosen.values()) > 15


@pytest.mark.parametrize("enumerate_up_to", [0, 1 << 16])
def test_different_pairs_are_uniform_over_cross_pairs(monkeypatch, enumerate_up_to):
    # four single images and one identity of 12: 6 + 4 * 12 = 54 cross pairs, 3 per call, 900
    # calls: 50 expected per pair. A sampler drawing the first image uniformly (then a partner)
    # would give a pair of two singles 1/16 * (1/15 + 1/15) = 0.0083 instead of 1/54 = 0.0185
    monkeypatch.setattr(module, "_ENUMERATE_UP_TO", enumerate_up_to)
    identities = _identities([1, 1, 1, 1, 12])
    cross = sorted(_all_pairs(identities, False))
    assert len(cross) == 54
    counts = Counter()
    for seed in range(900):
        pairs = verification_pairs(identities, same=0, different=3, seed=seed)
        counts.update(tuple(r) for r in pairs.index.tolist())
    assert set(counts) == set(cross)
    observed = np.array([counts[p] for p in cross], dtype=float)
    chi2 = float(((observed - 50.0) ** 2 / 50.0).sum())
    assert chi2 < 100.0  # 53 degrees of freedom: P(chi2 > 100) ~ 1e-4


def test_empty_request_and_device():
    identities = _identities(SIZES)
    pairs = verification_pairs(identities, same=0, different=0)
    assert pairs.index.shape == (0, 2) and pairs.same.shape == (0,)
    assert pairs.index.device == identities.device


@pytest.mark.parametrize("enumerate_up_to", [0, 1 << 16])
def test_same_pairs_are_uniform_within_an_identity(monkeypatch, enumerate_up_to):
    # one identity of 6 images: 15 pairs, 2 per call, 900 calls: 120 expected per pair
    monkeypatch.setattr(module, "_ENUMERATE_UP_TO", enumerate_up_to)
    identities = _identities([6])
    counts = Counter()
    for seed in range(900):
        pairs = verification_pairs(identities, same=2, different=0, seed=seed)
        counts.update(tuple(r) for r in pairs.index.tolist())
    assert set(counts) == _all_pairs(identities, True)
    observed = np.array(list(counts.values()), dtype=float)
    chi2 = float(((observed - 120.0) ** 2 / 120.0).sum())
    assert chi2 < 45.0  # 14 degrees of freedom: P(chi2 > 45) ~ 4e-5


def test_pair_capacity_against_a_loop():
    identities = torch.tensor([5, 5, 5, 2, 2, 9, 1, 1, 1, 1])
    same = sum(
        identities[i] == identities[j] for i in range(10) for j in range(i + 1, 10)
    )  # 3 + 1 + 0 + 6 = 10
    assert pair_capacity(identities) == (int(same), 45 - int(same))
