"""Label editing in embedding space: class statistics (eqs. 4-5), adding and removing a label.

Per label l, over the images where the label is present (y_i^l = 1; the train split with
ground-truth labels):

    mu_l    = sum_i y_i^l e_i^l / sum_i y_i^l                       (eq. 4)
    Sigma_l = E[X X^T] - E[X] E[X]^T,  X = {e_i^l : y_i^l = 1}      (eq. 5, biased 1/N)

Adding label l to an image sets its row e^l := s * v with v ~ N(mu_l, Sigma_l + jitter * I)
(s = 1 by default, 1.5 "emphasised", < 1 mild). Removing it sets e^l := 0, or s * v with a small s.
Every other row is kept as it is. ``swap_label`` gives each image another image's row instead (no
sampling), to check whether a label lives in its own row or elsewhere. Draws use an explicit
``torch.Generator`` (standard normals transformed by the Cholesky factor), never the global random
state; each image gets its own v.

Single-process functions on full arrays: under DDP, gather the embeddings first.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lightning_modules.olr.checks import check_embeddings, check_labels

__all__ = [
    "EMPHASISED_SCALE",
    "JITTER",
    "REMOVE_SCALE",
    "LabelGaussians",
    "add_label",
    "class_statistics",
    "remove_label",
    "sample_label",
    "swap_label",
]

JITTER = 1e-6
"""Added to the diagonal of Sigma_l before sampling (Sigma_l may be singular)."""
EMPHASISED_SCALE = 1.5
"""The paper's "emphasised" scale s for adding a label (Fig. 8)."""
REMOVE_SCALE = 0.1
"""Scale s of the optional "small norm" removal (e^l := s * v instead of 0)."""


class LabelGaussians(NamedTuple):
    """Per-label Gaussian of the positives' embeddings (float64, on the embeddings' device).

    Attributes:
        mean: (L, k) mu_l; NaN for a label without positives.
        covariance: (L, k, k) biased Sigma_l; NaN for a label without positives.
        count: (L,) int64 number of positives per label.
    """

    mean: Tensor
    covariance: Tensor
    count: Tensor


def class_statistics(embeddings: Tensor, labels: Tensor) -> LabelGaussians:
    """mu_l and the biased Sigma_l of every label over its positives (eqs. 4-5).

    Args:
        embeddings: (N, L, k) float.
        labels: (N, L) in {0, 1}.

    Returns:
        ``LabelGaussians``; a label with no positive has NaN statistics and count 0.
    """
    check_embeddings(embeddings)
    check_labels(labels, rows=embeddings.shape[0], columns=embeddings.shape[1])
    _, num_labels, k = embeddings.shape
    labels = labels.to(embeddings.device).bool()
    mean = torch.full((num_labels, k), math.nan, dtype=torch.float64, device=embeddings.device)
    covariance = torch.full_like(mean, math.nan).unsqueeze(-1).expand(-1, -1, k).clone()
    for label in range(num_labels):  # one label at a time: float64 copies stay (N_l, k)
        x = embeddings[labels[:, label], label, :].double()
        if x.shape[0] == 0:
            continue
        mean[label] = x.mean(0)
        centred = x - mean[label]
        covariance[label] = centred.T @ centred / x.shape[0]  # = E[XX^T] - E[X]E[X]^T
    return LabelGaussians(mean, covariance, labels.sum(0).cpu())


def sample_label(
    stats: LabelGaussians,
    label: int,
    num_samples: int,
    generator: torch.Generator | None = None,
    jitter: float = JITTER,
) -> Tensor:
    """``num_samples`` draws v ~ N(mu_l, Sigma_l + jitter * I), (num_samples, k) float64.

    Standard normals come from ``generator`` (on its device; a fresh one seeded 0 when None) and
    are transformed by the Cholesky factor of the covariance; the global RNG is not used.
    """
    if not 0 <= label < stats.mean.shape[0]:
        raise ValueError(f"label index {label} out of range for {stats.mean.shape[0]} labels")
    if int(stats.count[label]) == 0:
        raise ValueError(f"label index {label} has no positive image: no Gaussian to sample")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    mean, covariance = stats.mean[label], stats.covariance[label]
    k = mean.numel()
    eye = torch.eye(k, dtype=covariance.dtype, device=covariance.device)
    factor = torch.linalg.cholesky(covariance + jitter * eye)
    z = torch.randn(
        num_samples, k, generator=generator, dtype=torch.float64, device=generator.device
    )
    return mean + z.to(mean.device) @ factor.T


def _edited(embeddings: Tensor, label: int, row: Tensor) -> Tensor:
    """A copy of ``embeddings`` (N, L, k) with ``[:, label, :]`` replaced by ``row`` (N, k)."""
    check_embeddings(embeddings)
    if not 0 <= label < embeddings.shape[1]:
        raise ValueError(f"label index {label} out of range for {embeddings.shape[1]} labels")
    out = embeddings.clone()
    out[:, label, :] = row.to(device=out.device, dtype=out.dtype)
    return out


def add_label(
    embeddings: Tensor,
    label: int,
    stats: LabelGaussians,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    jitter: float = JITTER,
) -> Tensor:
    """Add label l: a copy of ``embeddings`` (N, L, k) with e^l := scale * v, v ~ N(mu_l, Sigma_l).

    One independent v per image; every other row is unchanged.
    """
    v = sample_label(stats, label, embeddings.shape[0], generator, jitter)
    return _edited(embeddings, label, scale * v)


def remove_label(
    embeddings: Tensor,
    label: int,
    stats: LabelGaussians | None = None,
    scale: float | None = None,
    generator: torch.Generator | None = None,
    jitter: float = JITTER,
) -> Tensor:
    """Remove label l: a copy of ``embeddings`` (N, L, k) with e^l := 0, or scale * v when given.

    Args:
        embeddings: (N, L, k) float.
        label: Index of the label l.
        stats: Class statistics; needed only with ``scale``.
        scale: None (default): the row becomes zero. A float s (e.g. ``REMOVE_SCALE``): the row
            becomes s * v with v ~ N(mu_l, Sigma_l), a "small norm" instance of the label.
        generator: Random source of the draws (with ``scale``).
        jitter: Added to Sigma_l's diagonal (with ``scale``).
    """
    if scale is None:
        zeros = embeddings.new_zeros(embeddings.shape[0], embeddings.shape[-1])
        return _edited(embeddings, label, zeros)
    if stats is None:
        raise ValueError("remove_label with a scale samples the label's Gaussian: pass stats")
    return add_label(embeddings, label, stats, scale, generator, jitter)


def swap_label(embeddings: Tensor, donors: Tensor, label: int) -> Tensor:
    """A copy of ``embeddings`` (N, L, k) whose row l is taken from ``donors`` (N, L, k), image by
    image; every other row is kept.

    Swapping the row of positives into negatives (and of negatives into positives) shows where a
    decoder reads the label: if it read it from row l only, the swapped images would follow the
    donors' label.
    """
    check_embeddings(donors)
    if donors.shape != embeddings.shape:
        raise ValueError(
            f"donors {tuple(donors.shape)} must have the shape of embeddings "
            f"{tuple(embeddings.shape)}"
        )
    return _edited(embeddings, label, donors[:, label, :])
