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

Where one pair set must give both the threshold and the accuracy (ISTRC's verification, LFW's
protocol), ``cross_validated_accuracy`` fits t on k - 1 folds and scores the held-out fold, k
times. ``roc_auc`` is the threshold-free score: the chance that a random same pair is closer than
a random different pair. ``pair_distances`` gives the Euclidean ||z1 - z2|| or, for unit vectors,
the spherical (great-circle) arccos(z1 . z2); on the unit sphere ||z1 - z2||^2 = 2 - 2 cos theta,
so both rank the pairs alike and have one AUC and one accuracy.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "DistanceMetric",
    "best_threshold",
    "cross_validated_accuracy",
    "fit_and_score",
    "pair_distances",
    "roc_auc",
    "verification_accuracy",
]

#: The distances of ``pair_distances``: Euclidean, or the great-circle angle of unit vectors.
DistanceMetric = Literal["euclidean", "spherical"]


def pair_distances(
    embeddings: Tensor, pairs: Tensor, metric: DistanceMetric = "euclidean"
) -> Tensor:
    """Distance between the two embeddings of each pair.

    Args:
        embeddings: (N, D) one embedding per item; unit vectors for ``"spherical"``.
        pairs: Integer (P, 2) item positions into ``embeddings``.
        metric: ``"euclidean"``: ``||z_i - z_j||_2``; ``"spherical"``: the angle
            ``arccos(clamp(z_i . z_j, -1, 1))`` in radians (the rows are not normalised here).

    Returns:
        (P,) the distance of each row ``(i, j)``, in the dtype of ``embeddings``.
    """
    if metric not in ("euclidean", "spherical"):
        raise ValueError(f"metric must be 'euclidean' or 'spherical', got {metric!r}")
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
    first, second = embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]
    if metric == "spherical":
        return torch.arccos((first * second).sum(dim=1).clamp(-1.0, 1.0))
    return torch.linalg.vector_norm(first - second, dim=1)


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


def cross_validated_accuracy(distances: Tensor, same: Tensor, folds: int = 10) -> float:
    """Mean held-out accuracy of the fitted threshold over ``folds`` folds of one pair set.

    Fold f holds the same pairs whose rank among the same pairs is f modulo ``folds``, and
    likewise the different pairs, so every fold keeps the set's balance (pairs arrive in a
    random order from ``verification_pairs``). For each fold, t = ``best_threshold`` of the other
    folds' pairs scores the fold's pairs; the result is the mean of the ``folds`` accuracies.

    Args:
        distances: (P,) finite pair distances.
        same: (P,) bool or {0, 1} labels.
        folds: k >= 2; each fold needs at least one pair (P >= k).
    """
    distances, same = _checked(distances, same, "cross-validated")
    if folds < 2 or len(distances) < folds:
        raise ValueError(f"need 2 <= folds <= pairs, got folds={folds} for {len(distances)} pairs")
    fold = torch.empty(len(same), dtype=torch.long)
    for label in (True, False):
        members = torch.nonzero(same == label).flatten()
        fold[members] = torch.arange(len(members)) % folds
    accuracies = []
    for f in range(folds):
        held = fold == f
        threshold = best_threshold(distances[~held], same[~held])
        accuracies.append(verification_accuracy(distances[held], same[held], threshold))
    return sum(accuracies) / folds


def roc_auc(distances: Tensor, same: Tensor) -> float:
    """ROC AUC of the rule "same iff distance <= t" over all t (smaller distance: more alike).

    The Mann-Whitney statistic in float64: the fraction of (same, different) pair couples whose
    same pair is strictly closer, ties counted one half. It depends only on the order of the
    distances, so any increasing function of them (arccos of cosines for ||z1 - z2|| of unit
    vectors) has the same AUC.

    Args:
        distances: (P,) finite pair distances, with at least one pair of each label.
        same: (P,) bool or {0, 1} labels.
    """
    distances, same = _checked(distances, same, "scored")
    positives, negatives = int(same.sum()), int((~same).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"roc_auc needs same and different pairs, got {positives} and {negatives}")
    # mid-ranks (1-based) of the negated distances: ties share the mean of their ranks
    _, inverse, counts = torch.unique(-distances, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]
    u = float(ranks[same].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


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
