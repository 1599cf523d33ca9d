"""callbacks.generative.random_features: seeded, frozen, shaped features; the Frechet distance on
them is 0 for one set against itself and grows as a set drifts from the reference."""

from __future__ import annotations

import pytest
import torch

from callbacks.generative.frechet import frechet_distance
from callbacks.generative.gaussian import FeatureGaussian
from callbacks.generative.random_features import RandomConvFeatures


def _fid(extractor, real, fake) -> float:
    a, b = FeatureGaussian(extractor.num_features), FeatureGaussian(extractor.num_features)
    a.update(extractor(real))
    b.update(extractor(fake))
    (mu_a, sigma_a, _), (mu_b, sigma_b, _) = a.compute(), b.compute()
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def test_features_are_seeded_frozen_and_shaped():
    a, b, c = RandomConvFeatures(8, 3, 0), RandomConvFeatures(8, 3, 0), RandomConvFeatures(8, 3, 1)
    x = torch.rand(5, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.allclose(a(x), c(x))
    assert a(x).shape == (5, 16) and a.num_features == 16
    assert a.fingerprint == "random-conv:w8-d3-s0" != c.fingerprint
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training


def test_frechet_distance_grows_with_the_drift():
    g = torch.Generator().manual_seed(0)
    extractor = RandomConvFeatures(16, 3, 0)
    real = torch.rand(200, 3, 32, 32, generator=g) * 0.5 + 0.25
    other = torch.rand(200, 3, 32, 32, generator=g) * 0.5 + 0.25
    fids = [_fid(extractor, real, (other + shift).clamp(0, 1)) for shift in (0.0, 0.1, 0.3)]
    assert _fid(extractor, real, real) == pytest.approx(0.0, abs=1e-6)
    assert fids[0] < fids[1] < fids[2]


def test_bad_inputs():
    with pytest.raises(ValueError, match="width and depth"):
        RandomConvFeatures(0)
    with pytest.raises(ValueError, match="H, W >= 16"):
        RandomConvFeatures()(torch.rand(1, 3, 8, 8))
