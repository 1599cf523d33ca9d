"""Label-embedding norms: their Pearson correlation matrix (Fig. 4) and their AUROC per label.

n_i^l = ||e_i^l||_2 for every image i and label l (an (N, L) table). The paper correlates the
columns of this table over all images (train and test). A label whose norm never varies (e.g. a
ReLU label slot that is zero on every image) has no correlation: its row and column are NaN and the
label is reported in ``NormCorrelation.constant`` rather than left to a division by zero.

Single-process functions on full arrays: under DDP, gather the embeddings first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from callbacks.auroc import per_attribute_auroc
from lightning_modules.olr.checks import check_embeddings, check_labels

__all__ = ["NormCorrelation", "embedding_norms", "norm_auroc", "norm_correlation"]


def embedding_norms(embeddings: Tensor) -> Tensor:
    """(N, L) Euclidean norms ||e_i^l||_2 of the (N, L, k) embeddings, float64."""
    check_embeddings(embeddings)
    return torch.linalg.vector_norm(embeddings.double(), dim=-1)


class NormCorrelation(NamedTuple):
    """Pearson correlation between label-embedding norms.

    Attributes:
        r: (L, L) float64 Pearson r between the norm columns; NaN in the row and column of every
            constant label (the diagonal is 1 elsewhere).
        constant: (L,) bool, True for labels whose norm is the same on every image.
    """

    r: Tensor
    constant: Tensor

    def undefined_message(self, names: Sequence[str]) -> str | None:
        """One line naming the labels without a correlation, or None when every label has one."""
        if len(names) != self.constant.numel():
            raise ValueError(f"got {len(names)} names for {self.constant.numel()} labels")
        undefined = [n for n, c in zip(names, self.constant.tolist(), strict=True) if c]
        if not undefined:
            return None
        return (
            f"norm correlation undefined (NaN) for {len(undefined)} label(s) whose embedding norm "
            f"is the same on every image: {', '.join(undefined)}"
        )


def norm_correlation(embeddings: Tensor) -> NormCorrelation:
    """Pearson r between the columns of ``embedding_norms(embeddings)`` (``torch.corrcoef``).

    Args:
        embeddings: (N, L, k) float, N >= 2.

    Returns:
        ``NormCorrelation(r, constant)``; r is float64 on the embeddings' device.
    """
    norms = embedding_norms(embeddings)
    if norms.shape[0] < 2:
        raise ValueError("norm correlation needs at least 2 images")
    constant = norms.amax(0) == norms.amin(0)
    r = torch.corrcoef(norms.T)
    r[constant, :] = math.nan
    r[:, constant] = math.nan
    return NormCorrelation(r, constant)


def norm_auroc(embeddings: Tensor, labels: Tensor) -> Tensor:
    """(L,) AUROC of each label's norm ||e^l|| as a score for its label y^l (float64, on CPU).

    Exact, ties as one step (``sklearn.metrics.roc_auc_score``); NaN where a label's column holds a
    single class. The same computation as the AUROC callback (``callbacks.auroc``).
    """
    norms = embedding_norms(embeddings)
    check_labels(labels, rows=norms.shape[0], columns=norms.shape[1])
    auroc, _, _ = per_attribute_auroc(norms.cpu(), labels.cpu())
    return auroc
