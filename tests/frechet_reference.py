"""The reference route of the Frechet-distance tests and benchmark: scipy's ``sqrtm``.

FID as torchmetrics' docs and pytorch-fid define it: ``|mu1 - mu2|^2 + tr(S1) + tr(S2)
- 2 tr(sqrtm(S1 S2))``, the real part of the trace of scipy's general matrix square root.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    mu1, sigma1, mu2, sigma2 = (np.asarray(v, dtype=np.float64) for v in (mu1, sigma1, mu2, sigma2))
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root).real)


def gaussian_of(samples: int, dim: int, seed: int, shift: float = 0.0):
    """Mean and covariance of ``samples`` correlated, anisotropic ``dim``-d features (float64).

    With ``samples <= dim`` the covariance has rank ``samples - 1``: nearly singular.
    """
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    scales = torch.linspace(0.05, 2.0, dim, dtype=torch.float64)
    x = torch.randn(samples, dim, generator=generator, dtype=torch.float64) * scales @ mixing
    x = x + shift
    return x.mean(0), torch.cov(x.T)
