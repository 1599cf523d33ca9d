"""How far label embeddings collapse: the explained-variance ratios of each label's PCA.

The pair loss has an exact trivial minimiser, ``e^l = p^l w_l`` with one fixed unit vector per
label: 1-d embeddings that copy the classifier. Its first principal component explains all the
variance (ratio 1); isotropic embeddings give 1 / k per component. The collapse monitor warns
when the PC1 ratio of a label exceeds a threshold (0.95 in the spec); the PCA analysis reports
PC1 and PC2 of one label (67.5% and 4.1% for Mouth_Slightly_Open in the paper).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "embedding_moments",
    "explained_variance_ratios",
    "pc1_ratio",
    "ratios_from_moments",
]


def embedding_moments(embeddings: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(count, sums (L, k), outer_sums (L, k, k))`` of embeddings (N, L, k), in float64.

    The moments add up over batches and over DDP ranks (``all_reduce`` with a sum), so a
    monitor can accumulate them and call ``ratios_from_moments`` once on the whole set.
    """
    if embeddings.ndim != 3:
        raise ValueError(f"embeddings must be (N, L, k), got {tuple(embeddings.shape)}")
    x = embeddings.detach().double()
    count = torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device)
    return count, x.sum(dim=0), torch.einsum("nlj,nlm->ljm", x, x)


def ratios_from_moments(count: Tensor, sums: Tensor, outer_sums: Tensor) -> Tensor:
    """The explained-variance ratios (L, k), descending, of the set with these moments.

    The covariance is the biased one, ``outer_sums / N - mean mean^T``. A label whose
    embeddings do not vary at all (a single point, e.g. all zeros) counts as fully collapsed:
    ratio 1 on its first component, 0 on the others.
    """
    if float(count) < 2:
        raise ValueError(f"the variance ratios need N >= 2 embeddings, got {float(count):g}")
    mean = sums / count  # (L, k)
    covariance = outer_sums / count - mean[:, :, None] * mean[:, None, :]  # (L, k, k)
    variances = torch.linalg.eigvalsh(covariance).flip(-1).clamp_min(0)  # descending
    total = variances.sum(dim=-1, keepdim=True)
    ratios = variances / total.clamp_min(torch.finfo(torch.float64).tiny)
    point = torch.zeros_like(ratios)
    point[:, 0] = 1.0
    return torch.where(total > 0, ratios, point)


def explained_variance_ratios(embeddings: Tensor) -> Tensor:
    """Per label, the variance share of each principal component, descending: (L, k) float64.

    Args:
        embeddings: (N, L, k), N >= 2 images; each label's k-vectors are centred over the N.

    A label whose embeddings do not vary counts as fully collapsed (``ratios_from_moments``).
    """
    if embeddings.ndim != 3 or embeddings.shape[0] < 2:
        raise ValueError(f"embeddings must be (N >= 2, L, k), got {tuple(embeddings.shape)}")
    x = embeddings.detach().double()
    x = x - x.mean(dim=0)  # centred first: exact moments when the mean is large
    return ratios_from_moments(*embedding_moments(x))


def pc1_ratio(embeddings: Tensor) -> Tensor:
    """The first principal component's variance share of each label, (L,) float64 in [1/k, 1]."""
    return explained_variance_ratios(embeddings)[:, 0]
