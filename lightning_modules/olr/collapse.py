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

__all__ = ["explained_variance_ratios", "pc1_ratio"]


def explained_variance_ratios(embeddings: Tensor) -> Tensor:
    """Per label, the variance share of each principal component, descending: (L, k) float64.

    Args:
        embeddings: (N, L, k), N >= 2 images; each label's k-vectors are centred over the N.

    A label whose embeddings do not vary at all (a single point, e.g. all zeros) counts as fully
    collapsed: ratio 1 on its first component, 0 on the others.
    """
    if embeddings.ndim != 3 or embeddings.shape[0] < 2:
        raise ValueError(f"embeddings must be (N >= 2, L, k), got {tuple(embeddings.shape)}")
    x = embeddings.detach().double()
    x = x - x.mean(dim=0)
    covariance = torch.einsum("nlj,nlm->ljm", x, x) / x.shape[0]  # (L, k, k)
    variances = torch.linalg.eigvalsh(covariance).flip(-1).clamp_min(0)  # descending
    total = variances.sum(dim=-1, keepdim=True)
    ratios = variances / total.clamp_min(torch.finfo(torch.float64).tiny)
    point = torch.zeros_like(ratios)
    point[:, 0] = 1.0
    return torch.where(total > 0, ratios, point)


def pc1_ratio(embeddings: Tensor) -> Tensor:
    """The first principal component's variance share of each label, (L,) float64 in [1/k, 1]."""
    return explained_variance_ratios(embeddings)[:, 0]
