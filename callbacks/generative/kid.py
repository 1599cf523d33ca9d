"""Kernel Inception Distance: unbiased MMD^2 of the cubic polynomial kernel over random subsets.

``k(x, y) = (x . y / d + 1)^3``. For a subset of m real features X and m generated features Y,
``MMD^2 = (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)) / (m (m - 1))
- 2 sum_{i, j} k(x_i, y_j) / m^2``. KID is the mean over the subsets, reported with the
population standard deviation over the subsets (as torchmetrics' ``KernelInceptionDistance``
and torch-fidelity report it).

The subsets are an explicit input. ``draw_subsets`` draws them from a seed the way torchmetrics
does from its global generator: for each subset, a random permutation of the real indices, then
one of the generated indices, each cut to ``subset_size``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["draw_subsets", "kernel_inception_distance", "polynomial_mmd2"]


def polynomial_mmd2(real: Tensor, fake: Tensor) -> Tensor:
    """Unbiased MMD^2 of (m, d) ``real`` and (m, d) ``fake`` under (x . y / d + 1)^3, float64."""
    if real.shape != fake.shape or real.ndim != 2 or real.shape[0] < 2:
        raise ValueError(
            f"polynomial_mmd2: real and fake must both be (m, d) with m >= 2, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )
    m, d = real.shape
    x, y = real.double(), fake.double()

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return (a @ b.T / d + 1) ** 3

    k_xx, k_yy = kernel(x, x), kernel(y, y)
    within = k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()
    return within / (m * (m - 1)) - 2 * kernel(x, y).sum() / m**2


def draw_subsets(
    num_real: int, num_fake: int, subsets: int, subset_size: int, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """``subsets`` pairs (real indices, fake indices), each ``subset_size`` distinct indices.

    Drawn with a CPU ``torch.Generator`` seeded with ``seed``, alternating real and fake
    permutations: the same subsets as torchmetrics' ``KernelInceptionDistance.compute()`` draws
    after ``torch.manual_seed(seed)``.
    """
    if subsets < 1 or subset_size < 2:
        raise ValueError(
            f"draw_subsets: need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}"
        )
    if min(num_real, num_fake) < subset_size:
        raise ValueError(
            f"draw_subsets: subset_size {subset_size} exceeds the number of real ({num_real}) "
            f"or generated ({num_fake}) features"
        )
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(subsets):
        real = torch.randperm(num_real, generator=generator)[:subset_size]
        fake = torch.randperm(num_fake, generator=generator)[:subset_size]
        pairs.append((real, fake))
    return pairs


def kernel_inception_distance(
    real: Tensor, fake: Tensor, subsets: list[tuple[Tensor, Tensor]]
) -> tuple[float, float]:
    """(mean, population std) of ``polynomial_mmd2`` over ``subsets`` of (N, d) features.

    Args:
        real: (N_real, d) features of the real set.
        fake: (N_fake, d) features of the generated set.
        subsets: (real indices, fake indices) pairs of equal length, e.g. from ``draw_subsets``.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"kernel_inception_distance: real and fake must be (N, d) with the same d, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if not subsets:
        raise ValueError("kernel_inception_distance: no subsets given")
    values = torch.stack(
        [polynomial_mmd2(real[r.to(real.device)], fake[f.to(fake.device)]) for r, f in subsets]
    )
    return float(values.mean()), float(values.std(correction=0))
