"""The Frechet distance between two Gaussians, FID's formula, in float64 without ``sqrtm``.

``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``. The last trace is the sum of
the square roots of the eigenvalues of S1 S2, which are those of the symmetric positive
semi-definite matrix F^T S2 F for any factor F with F F^T = S1. F is the Cholesky factor of
whichever covariance is numerically positive definite (S1 S2 and S2 S1 share their eigenvalues);
when neither is (fewer samples than dimensions), F = V W^(1/2) from the eigendecomposition
S1 = V W V^T, keeping only the eigenvalues above NumPy's rank tolerance (largest eigenvalue x d x
float64 epsilon, as ``numpy.linalg.matrix_rank``): the others, negative ones included, are
rounding noise of zero, and dropping their columns makes F^T S2 F as small as S1's rank.
Eigenvalues of F^T S2 F below zero are rounding noise as well and count as zero. Everything runs
on the tensors' device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["frechet_distance", "trace_sqrt_product"]


def _factor(sigma1: Tensor, sigma2: Tensor) -> tuple[Tensor, Tensor]:
    """(F, S) with F F^T one of the covariances and S the other."""
    for first, second in ((sigma1, sigma2), (sigma2, sigma1)):
        lower, info = torch.linalg.cholesky_ex(first)
        if int(info) == 0:
            return lower, second
    values, vectors = torch.linalg.eigh(sigma1)
    keep = values > values.max() * sigma1.shape[0] * torch.finfo(values.dtype).eps
    return vectors[:, keep] * values[keep].sqrt(), sigma2


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """tr((S1 S2)^(1/2)) of two symmetric positive semi-definite (d, d) matrices, in float64."""
    factor, other = _factor(sigma1.double(), sigma2.double())
    inner = factor.T @ other @ factor
    eigenvalues = torch.linalg.eigvalsh((inner + inner.T) / 2)
    return eigenvalues.clamp(min=0).sqrt().sum()


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2), as FID defines it, in float64.

    Args:
        mu1, mu2: means (d,).
        sigma1, sigma2: covariances (d, d), symmetric positive semi-definite.

    Raises:
        ValueError: shapes that do not match (d,) and (d, d), or values that are not finite.
    """
    d = mu1.shape[-1]
    for name, value, shape in (
        ("mu1", mu1, (d,)),
        ("mu2", mu2, (d,)),
        ("sigma1", sigma1, (d, d)),
        ("sigma2", sigma2, (d, d)),
    ):
        if tuple(value.shape) != shape:
            raise ValueError(f"frechet_distance: {name} must be {shape}, got {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"frechet_distance: {name} contains NaN or inf")
    device = sigma1.device
    mu1, mu2 = mu1.to(device, torch.float64), mu2.to(device, torch.float64)
    sigma1, sigma2 = sigma1.double(), sigma2.to(device, torch.float64)
    mean_term = (mu1 - mu2).square().sum()
    trace_term = sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(mean_term + trace_term)
