"""callbacks.generative.kid against torchmetrics' KernelInceptionDistance on the same subsets."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

from callbacks.generative.kid import draw_subsets, kernel_inception_distance, polynomial_mmd2


class _GivenFeatures(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _features(samples: int, dim: int, seed: int, shift: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, dim, generator=generator, dtype=torch.float64) + shift


def _torchmetrics_kid(real, fake, subsets: int, subset_size: int, seed: int):
    metric = KernelInceptionDistance(
        feature=_GivenFeatures(), subsets=subsets, subset_size=subset_size
    )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(seed)  # torchmetrics draws its subsets from the global generator
    mean, std = metric.compute()
    return float(mean), float(std)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_equals_torchmetrics_on_the_same_subsets():
    real, fake = _features(300, 64, seed=1, shift=0.0), _features(250, 64, seed=2, shift=0.3)
    subsets = draw_subsets(300, 250, subsets=7, subset_size=50, seed=123)
    mean, std = kernel_inception_distance(real, fake, subsets)
    reference = _torchmetrics_kid(real, fake, subsets=7, subset_size=50, seed=123)
    assert mean > 0.01 and std > 0
    assert mean == pytest.approx(reference[0], rel=1e-10)
    assert std == pytest.approx(reference[1], rel=1e-10)


def test_kid_of_explicit_subsets_is_the_mean_of_their_mmd():
    real, fake = _features(40, 8, seed=3, shift=0.0), _features(40, 8, seed=4, shift=1.0)
    subsets = [(torch.arange(10), torch.arange(10, 20)), (torch.arange(5, 20), torch.arange(15))]
    values = torch.stack([polynomial_mmd2(real[r], fake[f]) for r, f in subsets])
    assert kernel_inception_distance(real, fake, subsets) == pytest.approx(
        (float(values.mean()), float(values.std(correction=0))), rel=1e-12
    )


def test_polynomial_mmd2_by_hand():
    # 2 x 2 of 1-d features: k(a, b) = (a b + 1)^3
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [2.0]])
    k = lambda a, b: (a * b + 1) ** 3  # noqa: E731
    within = 2 * k(0, 1) + 2 * k(1, 2)
    between = k(0, 1) + k(0, 2) + k(1, 1) + k(1, 2)
    expected = within / 2 - 2 * between / 4
    assert polynomial_mmd2(x, y).item() == pytest.approx(expected, rel=1e-12)


def test_kid_of_a_set_with_itself_is_near_zero_and_unbiased():
    # unbiased: two draws of one distribution average to about zero, not to a positive bias
    real, fake = _features(2000, 16, seed=5, shift=0.0), _features(2000, 16, seed=6, shift=0.0)
    mean, std = kernel_inception_distance(real, fake, draw_subsets(2000, 2000, 20, 200, seed=0))
    assert abs(mean) < 3 * std / 20**0.5 + 1e-4


def test_kid_refuses_bad_subsets():
    with pytest.raises(ValueError, match="subset_size 50 exceeds"):
        draw_subsets(30, 100, subsets=2, subset_size=50, seed=0)
    with pytest.raises(ValueError, match="same d"):
        kernel_inception_distance(torch.zeros(4, 3), torch.zeros(4, 2), [])
    with pytest.raises(ValueError, match="no subsets"):
        kernel_inception_distance(torch.zeros(4, 3), torch.zeros(4, 3), [])
