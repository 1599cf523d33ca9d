"""The class-weighted multi-label BCE of Le & Lee, eqs. 1-6 (plain torch functions).

``class_balance_weights`` (eqs. 4-6), ``positive_weights`` (ablation), ``attribute_weights``
(picks one by mode), ``weighted_bce`` (eqs. 1-3, sign fixed) and ``attribute_bce``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

WeightMode = Literal["class", "pos_weight", "none"]
WEIGHT_MODES: tuple[str, ...] = ("class", "pos_weight", "none")


# --- multi-label attributes -----------------------------------------------------------------------


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    if labels.dim() != 2:
        raise ValueError(f"labels must be (N, M), got shape {tuple(labels.shape)}")
    if labels.shape[0] == 0:
        raise ValueError("labels are empty: class weights need at least one training example")
    labels = labels.to(torch.float64)
    if not torch.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be in {0, 1}")
    return labels


def class_balance_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-class weights ``w_t = N / (M * N_t)`` (eqs. 4-6, after King & Zeng).

    ``N`` is the total number of positive labels, ``N_t`` the positives of class ``t`` (clamped to
    >= 1 so an absent class gets a finite weight) and ``M`` the number of classes. A class with the
    average positive count gets weight 1, and ``sum_t w_t * N_t == N`` when no clamping happens.

    Args:
        labels: (N, M) training labels in {0, 1} (any dtype).

    Returns:
        (M,) float32 weights.
    """
    labels = _check_labels(labels)
    per_class = labels.sum(0)
    total = per_class.sum()
    if total == 0:
        raise ValueError("labels have no positive entry: class weights are undefined")
    return (total / (labels.shape[1] * per_class.clamp_min(1))).float()


def positive_weights(labels: torch.Tensor) -> torch.Tensor:
    """``pos_weight_t = N_neg,t / N_pos,t`` (N_pos clamped >= 1); an ablation, not the paper."""
    labels = _check_labels(labels)
    positives = labels.sum(0)
    return ((labels.shape[0] - positives) / positives.clamp_min(1)).float()


def attribute_weights(labels: torch.Tensor, mode: WeightMode) -> torch.Tensor:
    """The (M,) weights ``attribute_bce`` expects for ``mode`` (``"none"`` gives ones)."""
    if mode == "class":
        return class_balance_weights(labels)
    if mode == "pos_weight":
        return positive_weights(labels)
    if mode == "none":
        return torch.ones(_check_labels(labels).shape[1])
    raise ValueError(f"weight mode must be one of {WEIGHT_MODES}, got {mode!r}")


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``L = 1/(n m) sum_ij w_j l_ij`` with ``l_ij = -[y log s(h) + (1 - y) log(1 - s(h))]``.

    The weight multiplies the whole per-class term, positives and negatives alike (eq. 1); with
    ``w = 1`` this is ``BCEWithLogitsLoss()``.

    Args:
        logits: (n, m) raw scores H.
        target: (n, m) labels in {0, 1}.
        weights: (m,) per-class weights.
    """
    return F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), weight=weights.to(logits.dtype).view(1, -1)
    )


def attribute_bce(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, mode: WeightMode
) -> torch.Tensor:
    """Mean BCE weighted per ``mode``: whole-term class weights, positive-term weights, or none."""
    target = target.to(logits.dtype)
    if mode == "class":
        return weighted_bce(logits, target, weights)
    if mode == "pos_weight":
        return F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=weights.to(logits.dtype)
        )
    if mode == "none":
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"weight mode must be one of {WEIGHT_MODES}, got {mode!r}")
