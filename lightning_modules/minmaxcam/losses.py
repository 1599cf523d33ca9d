"""MinMaxCAM's Stage II regularizers (thesis Eq. 5.2, 5.3) on pooled features of masked images."""

from __future__ import annotations

import torch
from torch import Tensor


def common_region_loss(features: Tensor, group_size: int, reduction: str = "mean") -> Tensor:
    """CRR (Eq. 5.2): distance between the masked features of images of the same class.

    Args:
        features: (N * m, K) with rows ``[i*m, (i+1)*m)`` from one class.
        group_size: m.
        reduction: ``mean`` (squared error averaged over K, the author's MSE) or ``sum`` (squared
            L2 norm, the thesis). Averaged over the unordered pairs of a group, then over groups.
    """
    groups = features.view(-1, group_size, features.shape[-1])  # (N, m, K)
    diff = groups[:, :, None, :] - groups[:, None, :, :]  # (N, m, m, K)
    per_pair = diff.pow(2).mean(-1) if reduction == "mean" else diff.pow(2).sum(-1)
    upper = torch.triu(
        torch.ones(group_size, group_size, dtype=torch.bool, device=features.device), 1
    )
    return per_pair[:, upper].mean()


def full_region_loss(masked: Tensor, full: Tensor, reduction: str = "mean") -> Tensor:
    """FRR (Eq. 5.3): distance between masked and unmasked features, averaged over images."""
    squared = (masked - full).pow(2)
    return squared.mean() if reduction == "mean" else squared.sum(-1).mean()
