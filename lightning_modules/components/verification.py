"""Face verification by embedding distance: pair distances, the fitted threshold, the accuracy.

The protocol of the ``disentangle`` spec (section 6, "Verification accuracy"), shared with ISTRC:
a pair is called "same identity" iff the Euclidean distance d of its two embeddings is <= t; t
maximises the accuracy on a fitting set of pairs (CelebA val) and is then applied to the test
pairs. Chance is 0.5 on balanced pairs. The pairs come from
``datamodules.verification_pairs.verification_pairs``.

``best_threshold`` is exact: on the fitting pairs the rule "d <= t" can only split the sorted
distances between two consecutive distinct values u_k < u_{k+1} (or call every pair different,
or every pair same), so it scores each of these splits with integer counts and returns, for the
best one, the midpoint (u_k + u_{k+1}) / 2 of the thresholds that make it: -inf when calling every
pair different wins, +inf when calling every pair same wins. Equal distances always fall on the
same side. Ties in accuracy go to the smallest threshold.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["best_threshold", "fit_and_score", "pair_distances", "verification_accuracy"]


def pair_distances(embeddings: Tensor, pairs: Tensor) -> Tensor:
    """Euclidean distance between the two embeddings of each pair.

    Args:
        embeddings: (N, D) one embedding per item.
        pairs: Integer (P, 2) item positions into ``embeddings``.

    Returns:
        (P,) ``||embeddings[i] - embeddings[j]||_2`` for each row ``(i, j)``, in the dtype of
        ``embeddings``.
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    if pairs.dim() != 2 or pairs.shape[1] != 2 or pairs.dtype.is_floating_point:
        raise ValueError(f"pairs must be integer (P, 2), got {pairs.dtype} {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= len(embeddings)):
        raise ValueError(
            f"pairs index items {int(pairs.min())}..{int(pairs.max())}, "
            f"but there are {len(embeddings)} embeddings"
        )
    pairs = pairs.to(embeddings.device)
    return torch.linalg.vector_norm(embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]], dim=1)


def best_threshold(distances: Tensor, same: Tensor) -> float:
    """The threshold t maximising the accuracy of "same iff distance <= t" on these pairs.

    Args:
        distances: (P,) finite pair distances, P >= 1.
        same: (P,) bool or {0, 1} (any dtype), True / 1 for a same-identity pair.

    Returns:
        The midpoint between the largest distance called "same" and the next distinct distance
        of the best split; ``-inf`` if calling every pair different is best, ``+inf`` if calling
        every pair same is. Ties in accuracy go to the smallest threshold (module docstring).
    """
    distances, same = _checked(distances, same, "fitting")
    values, group = torch.unique(distances, sorted=True, return_inverse=True)  # (U,), (P,)
    same_at = torch.zeros(len(values), dtype=torch.long).index_add_(0, group, same.long())
    diff_at = torch.bincount(group, minlength=len(values)) - same_at
    # correct[0]: every pair "different"; correct[k + 1]: "same" up to and including values[k]
    total_different = int(diff_at.sum())
    split = same_at.cumsum(0) + total_different - diff_at.cumsum(0)  # (U,)
    correct = torch.cat([torch.tensor([total_different]), split])  # (U + 1,)
    best = int(torch.argmax(correct))  # first maximum: the smallest threshold
    if best == 0:
        return -math.inf
    if best == len(values):
        return math.inf
    return float((values[best - 1] + values[best]) / 2)


def verification_accuracy(distances: Tensor, same: Tensor, threshold: float) -> float:
    """Fraction of pairs the rule "same iff distance <= threshold" gets right.

    Args:
        distances: (P,) finite pair distances, P >= 1.
        same: (P,) bool or {0, 1} (any dtype), True / 1 for a same-identity pair.
        threshold: t, e.g. from ``best_threshold`` on other pairs (may be +-inf).
    """
    distances, same = _checked(distances, same, "scored")
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    return float(((distances <= threshold) == same).double().mean())


def fit_and_score(
    fit_distances: Tensor, fit_same: Tensor, test_distances: Tensor, test_same: Tensor
) -> tuple[float, float]:
    """Fit the threshold on one pair set and score it on another.

    Args:
        fit_distances: (P_fit,) distances of the fitting pairs (CelebA val).
        fit_same: (P_fit,) their labels, bool or {0, 1}.
        test_distances: (P_test,) distances of the test pairs (CelebA test).
        test_same: (P_test,) their labels, bool or {0, 1}.

    Returns:
        ``(threshold, test accuracy)``.
    """
    threshold = best_threshold(fit_distances, fit_same)
    return threshold, verification_accuracy(test_distances, test_same, threshold)


def _checked(distances: Tensor, same: Tensor, which: str) -> tuple[Tensor, Tensor]:
    """(P,) float64 distances and (P,) bool labels on the CPU, after checking both."""
    if distances.dim() != 1 or same.shape != distances.shape:
        raise ValueError(
            f"{which} distances and labels must both be (P,), got shapes "
            f"{tuple(distances.shape)} and {tuple(same.shape)}"
        )
    if len(distances) == 0:
        raise ValueError(f"no {which} pairs")
    distances = distances.detach().cpu().double()
    if not bool(torch.isfinite(distances).all()):
        raise ValueError(f"{which} distances must be finite, got NaN or inf")
    same = same.detach().cpu()
    if same.dtype != torch.bool:
        if not bool(((same == 0) | (same == 1)).all()):
            raise ValueError(f"{which} labels must be bool or in {{0, 1}}")
        same = same.bool()
    return distances, same
