"""callbacks.generative.frechet and .gaussian against scipy's sqrtm route and torchmetrics' FID."""

from __future__ import annotations

import math

import pytest
import torch
from frechet_reference import gaussian_of, scipy_frechet
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from callbacks.generative.frechet import frechet_distance, trace_sqrt_product
from callbacks.generative.gaussian import FeatureGaussian, gaussian_from_sums


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# (samples of set 1, samples of set 2): both full rank; set 1 singular (its factor comes from
# set 2); both singular (the eigendecomposition route)
CASES = [(2000, 1500), (100, 1500), (150, 100)]


@pytest.mark.parametrize(("n1", "n2"), CASES)
def test_frechet_equals_the_scipy_sqrtm_route(n1, n2):
    mu1, s1 = gaussian_of(n1, 384, seed=1)
    mu2, s2 = gaussian_of(n2, 384, seed=2, shift=0.1)
    reference = scipy_frechet(mu1, s1, mu2, s2)
    assert reference > 1
    assert _relative(frechet_distance(mu1, s1, mu2, s2), reference) < 1e-6


def test_frechet_of_nearly_singular_1024d_covariances_equals_scipy():
    # 250 samples of 1024-d features (rank 249) against a full-rank set; the 2048-d cases below
    # are slow only because of scipy's sqrtm
    mu1, s1 = gaussian_of(250, 1024, seed=3)
    mu2, s2 = gaussian_of(1500, 1024, seed=4, shift=0.05)
    reference = scipy_frechet(mu1, s1, mu2, s2)
    assert _relative(frechet_distance(mu1, s1, mu2, s2), reference) < 1e-6


@pytest.mark.slow  # scipy's sqrtm of two 2048-d products
@pytest.mark.parametrize(("n1", "n2"), [(4000, 3000), (500, 3000), (500, 700)])
def test_frechet_of_2048d_covariances_equals_scipy(n1, n2):
    mu1, s1 = gaussian_of(n1, 2048, seed=5)
    mu2, s2 = gaussian_of(n2, 2048, seed=6, shift=0.05)
    reference = scipy_frechet(mu1, s1, mu2, s2)
    assert _relative(frechet_distance(mu1, s1, mu2, s2), reference) < 1e-6


def test_frechet_of_a_gaussian_with_itself_is_zero_and_symmetric():
    mu1, s1 = gaussian_of(300, 64, seed=7)
    mu2, s2 = gaussian_of(40, 64, seed=8, shift=1.0)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9 * s1.trace().item()
    assert math.isclose(
        frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1), rel_tol=1e-10
    )


def test_trace_sqrt_product_of_commuting_matrices():
    # diagonal covariances commute: tr(sqrt(S1 S2)) = sum sqrt(a_i b_i), zeros included
    a = torch.tensor([4.0, 0.0, 9.0, 1.0], dtype=torch.float64)
    b = torch.tensor([1.0, 5.0, 4.0, 0.0], dtype=torch.float64)
    assert trace_sqrt_product(torch.diag(a), torch.diag(b)).item() == pytest.approx(2 + 0 + 6 + 0)


def test_frechet_of_constant_features_is_the_mean_distance_plus_the_other_trace():
    # a zero covariance has no positive eigenvalue: its factor has no column
    zero = torch.zeros(4, 4, dtype=torch.float64)
    assert frechet_distance(torch.zeros(4), zero, torch.ones(4), zero) == 4.0
    assert frechet_distance(torch.zeros(4), zero, torch.ones(4), 2 * torch.eye(4)) == 12.0


def test_frechet_refuses_mismatched_or_non_finite_inputs():
    mu, sigma = torch.zeros(3), torch.eye(3)
    with pytest.raises(ValueError, match="sigma2 must be"):
        frechet_distance(mu, sigma, mu, torch.eye(4))
    with pytest.raises(ValueError, match="mu1 contains NaN"):
        frechet_distance(torch.full((3,), math.nan), sigma, mu, sigma)


class _GivenFeatures(nn.Module):
    """A torchmetrics feature extractor that returns its input: the features are the 'images'."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _spread_features(samples: int, dim: int, seed: int, shift: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return torch.randn(samples, dim, generator=generator, dtype=torch.float64) @ mixing + shift


def test_fid_from_features_equals_torchmetrics():
    real = _spread_features(700, 256, seed=9, shift=0.0)
    fake = _spread_features(500, 256, seed=10, shift=0.5)
    theirs = FrechetInceptionDistance(feature=_GivenFeatures(256))
    ours = {"real": FeatureGaussian(256), "fake": FeatureGaussian(256)}
    for start in range(0, 700, 128):  # batches of unequal sizes, as an evaluation loop gives
        theirs.update(real[start : start + 128], real=True)
        ours["real"].update(real[start : start + 128])
    for start in range(0, 500, 96):
        theirs.update(fake[start : start + 96], real=False)
        ours["fake"].update(fake[start : start + 96])
    reference = float(theirs.compute())
    assert reference > 100
    mu1, s1, n1 = ours["real"].compute()
    mu2, s2, n2 = ours["fake"].compute()
    assert (n1, n2) == (700, 500)
    assert _relative(frechet_distance(mu1, s1, mu2, s2), reference) < 1e-4


def test_gaussian_statistics_equal_mean_and_covariance():
    x = _spread_features(50, 6, seed=11, shift=3.0)
    metric = FeatureGaussian(6)
    metric.update(x[:20])
    metric.update(x[20:])
    mean, covariance, count = metric.compute()
    assert count == 50
    torch.testing.assert_close(mean, x.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(covariance, torch.cov(x.T), rtol=1e-10, atol=1e-10)
    assert torch.equal(covariance, covariance.T)


def test_gaussian_statistics_refuse_bad_features():
    metric = FeatureGaussian(4)
    with pytest.raises(ValueError, match=r"features must be \(N, 4\)"):
        metric.update(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="NaN or inf"):
        metric.update(torch.full((2, 4), math.inf))
    with pytest.raises(ValueError, match="at least 2 feature vectors, got 1"):
        gaussian_from_sums(torch.zeros(4), torch.zeros(4, 4), 1)
