"""PCA of one label's embeddings (Fig. 5), PC1 ratios of every label and the collapse check.

For a label l, X = {e_i^l} over all images (positives and negatives), centred; the principal axes
are the right singular vectors of X (``torch.linalg.svd``) and the explained variance ratio of a
component is its squared singular value over their sum. The PC1 projection's sign is fixed so
that the positives of the label have the larger mean. A label whose embeddings are identical on
every image has no principal axis: its ratios are NaN.

The loss has a trivial minimiser in which every label slot is one fixed direction scaled by the
teacher's probability; then PC1 explains all of the variance. ``collapsed_labels`` lists the labels
whose PC1 ratio exceeds a threshold, with the one-line warning the module emits.

Single-process functions on full arrays: under DDP, gather the embeddings first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from lightning_modules.olr.checks import check_embeddings, check_labels

__all__ = [
    "COLLAPSE_THRESHOLD",
    "LabelPCA",
    "collapsed_labels",
    "label_pca",
    "strip_indices",
]

COLLAPSE_THRESHOLD = 0.95
"""PC1 explained-variance ratio above which a label's embeddings count as collapsed."""


class LabelPCA(NamedTuple):
    """PCA of one label's embeddings over all images (float64, on the embeddings' device).

    Attributes:
        explained_variance_ratio: (min(N, k),) ratios of every component, largest first; NaN when
            the embeddings do not vary.
        projection: (N,) centred embeddings projected on PC1, sign fixed so that the positives
            have the larger mean.
        component: (k,) unit PC1 axis, with the same sign as ``projection``.
        mean: (k,) mean embedding that was subtracted.
    """

    explained_variance_ratio: Tensor
    projection: Tensor
    component: Tensor
    mean: Tensor


def _centred(embeddings: Tensor, label: int) -> tuple[Tensor, Tensor]:
    if not 0 <= label < embeddings.shape[1]:
        raise ValueError(f"label index {label} out of range for {embeddings.shape[1]} labels")
    x = embeddings[:, label, :].double()
    mean = x.mean(0)
    return x - mean, mean


def _ratios(singular_values: Tensor) -> Tensor:
    power = singular_values.square()
    total = power.sum()
    if total == 0:
        return torch.full_like(power, math.nan)
    return power / total


def label_pca(embeddings: Tensor, label: int, labels: Tensor) -> LabelPCA:
    """PCA of ``embeddings[:, label, :]`` over all N images, PC1 sign fixed by ``labels``.

    Args:
        embeddings: (N, L, k) float, N >= 2.
        label: Index of the label l.
        labels: (N, L) ground truth in {0, 1}; column ``label`` must hold both classes (the
            sign of PC1 is set so that its positives project higher on average).

    Returns:
        ``LabelPCA``; with embeddings that do not vary, NaN ratios and a zero projection.
    """
    check_embeddings(embeddings)
    check_labels(labels, rows=embeddings.shape[0], columns=embeddings.shape[1])
    if embeddings.shape[0] < 2:
        raise ValueError("PCA needs at least 2 images")
    x, mean = _centred(embeddings, label)
    positive = labels[:, label].to(x.device).bool()
    if positive.all() or not positive.any():
        raise ValueError(
            f"label index {label} has a single class on these {positive.numel()} images: the "
            "sign of PC1 (positives project higher) is undefined"
        )
    _, singular_values, vh = torch.linalg.svd(x, full_matrices=False)
    component = vh[0]
    projection = x @ component
    if projection[positive].mean() < projection[~positive].mean():
        component, projection = -component, -projection
    return LabelPCA(_ratios(singular_values), projection, component, mean)


def strip_indices(
    projection: Tensor, count: int = 10, step: int | None = None
) -> tuple[Tensor, Tensor]:
    """Images at ascending-projection ranks 0, step, 2*step, ... (the Fig. 5 strip).

    Args:
        projection: (N,) PC1 projections.
        count: Number of images in the strip.
        step: Rank distance between neighbours; default N // count (the paper: 20,000).

    Returns:
        ``(indices, ranks)``, each (count,) int64: ``indices[j]`` is the image whose projection
        has rank ``ranks[j] = j * step`` (rank 0 = lowest; ties ordered by image index).
    """
    n = projection.numel()
    if projection.ndim != 1:
        raise ValueError(f"projection must be 1-d (N,), got {tuple(projection.shape)}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    step = n // count if step is None else step
    if step < 1 or (count - 1) * step >= n:
        raise ValueError(
            f"a strip of {count} images with step {step} needs more than {(count - 1) * step} "
            f"images, got {n}"
        )
    order = torch.sort(projection, stable=True).indices
    ranks = torch.arange(count, device=projection.device) * step
    return order[ranks], ranks


def collapsed_labels(
    ratios: Tensor, names: Sequence[str], threshold: float = COLLAPSE_THRESHOLD
) -> tuple[list[str], str | None]:
    """Labels whose PC1 ratio exceeds ``threshold`` (or is NaN: no variance at all).

    Args:
        ratios: (L,) PC1 explained-variance ratios (``olr.collapse.pc1_ratio``).
        names: The L label names.
        threshold: Collapse threshold on the PC1 ratio.

    Returns:
        ``(names_collapsed, message)``; message is one line to warn with, None when no label
        collapsed.
    """
    if ratios.ndim != 1 or len(names) != ratios.numel():
        raise ValueError(f"got {len(names)} names for ratios of shape {tuple(ratios.shape)}")
    found, parts = [], []
    for name, ratio in zip(names, ratios.tolist(), strict=True):
        if math.isnan(ratio):
            found.append(name)
            parts.append(f"{name} (no variance)")
        elif ratio > threshold:
            found.append(name)
            parts.append(f"{name} ({ratio:.3f})")
    if not found:
        return [], None
    message = (
        f"OLR embedding collapse: PC1 explains more than {threshold:.0%} of the variance (or "
        f"there is none) for {len(found)} of {len(names)} label(s): {', '.join(parts)}; "
        "reconstruction and editing from these slots are unlikely to work"
    )
    return found, message
