"""FeatureGaussian summed over two gloo processes with uneven shares gives one process' FID."""

from __future__ import annotations

import pytest
import torch
from ranks import run_in_group

from callbacks.generative.frechet import frechet_distance
from callbacks.generative.gaussian import FeatureGaussian

DIM = 32
REAL, FAKE = 41, 53  # rank 0 holds 21 and 27 items, rank 1 holds 20 and 26


def _features(samples: int, seed: int, shift: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(DIM, DIM, generator=generator, dtype=torch.float64)
    return torch.randn(samples, DIM, generator=generator, dtype=torch.float64) @ mixing + shift


def _fid(real_batches, fake_batches) -> float:
    real, fake = FeatureGaussian(DIM), FeatureGaussian(DIM)
    for batch in real_batches:
        real.update(batch)
    for batch in fake_batches:
        fake.update(batch)
    mu1, s1, _ = real.compute()
    mu2, s2, _ = fake.compute()
    return frechet_distance(mu1, s1, mu2, s2)


def _fid_of_a_share(rank: int, world: int, whole: float) -> None:
    # the evaluation sampler's sharding: rank r gets items r, r + W, ...; batches of 5
    real, fake = _features(REAL, seed=1, shift=0.0), _features(FAKE, seed=2, shift=0.7)
    value = _fid(real[rank::world].split(5), fake[rank::world].split(5))
    values = [None] * world
    torch.distributed.all_gather_object(values, value)
    assert values == [value] * world
    # the sums are added in another order than in one process: equal up to rounding
    assert value == pytest.approx(whole, rel=1e-10), (value, whole)


@pytest.mark.slow  # two spawned processes
def test_fid_of_uneven_shares_over_two_processes_equals_one_process():
    whole = _fid([_features(REAL, seed=1, shift=0.0)], [_features(FAKE, seed=2, shift=0.7)])
    assert whole > 1
    run_in_group(_fid_of_a_share, 2, whole)  # a failed assertion in a process fails the call
