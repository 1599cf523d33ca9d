"""lightning_modules.components.verification: pair distances, the fitted threshold, accuracy,
cross-validated accuracy and ROC AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from lightning_modules.components.verification import (
    best_threshold,
    cross_validated_accuracy,
    fit_and_score,
    pair_distances,
    roc_auc,
    verification_accuracy,
)


def test_pair_distances_worked():
    embeddings = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    pairs = torch.tensor([[0, 1], [1, 2], [2, 2], [2, 0]])
    # |(3, 4)| = 5; |(2, 3)| = sqrt(13); a self pair 0; |(1, 1)| = sqrt(2)
    expected = torch.tensor([5.0, math.sqrt(13), 0.0, math.sqrt(2)])
    torch.testing.assert_close(pair_distances(embeddings, pairs), expected)


def test_pair_distances_match_numpy():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(20, 7))
    pairs = rng.integers(0, 20, size=(50, 2))
    expected = np.sqrt(((embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]]) ** 2).sum(1))
    got = pair_distances(torch.from_numpy(embeddings), torch.from_numpy(pairs))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_pair_distances_reject_bad_input():
    embeddings = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="but there are 3 embeddings"):
        pair_distances(embeddings, torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        pair_distances(embeddings, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        pair_distances(torch.zeros(3), torch.tensor([[0, 1]]))


def test_best_threshold_worked():
    distances = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    same = torch.tensor([1, 1, 0, 1, 0, 0])
    # correct pairs of "same iff d <= t" (3 same, 3 different):
    #   t < 0.1: 0 + 3 = 3;  <= 0.1: 1 + 3 = 4;  <= 0.2: 2 + 3 = 5;  <= 0.3: 2 + 2 = 4;
    #   <= 0.4: 3 + 2 = 5;   <= 0.5: 3 + 1 = 4;  <= 0.6: 3 + 0 = 3
    # best 5 / 6, tied at "<= 0.2" and "<= 0.4": the smaller wins, t = (0.2 + 0.3) / 2 = 0.25
    threshold = best_threshold(distances, same)
    assert threshold == pytest.approx(0.25, abs=1e-7)
    assert verification_accuracy(distances, same, threshold) == pytest.approx(5 / 6)
    # the same labels as bool give the same answer
    assert best_threshold(distances, same.bool()) == threshold


def test_equal_distances_fall_on_one_side():
    distances = torch.tensor([0.5, 1.0, 0.5, 0.5])
    same = torch.tensor([True, False, True, False])
    # t < 0.5: 2 correct (the different ones); <= 0.5: 2 same + the different at 1.0 = 3;
    # <= 1.0: 2. Best 3 / 4 at t = (0.5 + 1.0) / 2 = 0.75; the tied 0.5s cannot be split
    assert best_threshold(distances, same) == pytest.approx(0.75)
    assert verification_accuracy(distances, same, 0.75) == pytest.approx(0.75)
    # a distance equal to the threshold counts as "same": t = 0.5 calls the three 0.5s same
    # (2 right, 1 wrong) and 1.0 different (right): 3 / 4 (with "<" it would be 2 / 4)
    assert verification_accuracy(distances, same, 0.5) == pytest.approx(0.75)


def test_infinite_thresholds_and_their_ties():
    # every pair same: calling all "same" (t = +inf) scores 1; all different: t = -inf scores 1
    assert best_threshold(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])) == math.inf
    assert best_threshold(torch.tensor([1.0, 2.0]), torch.tensor([0, 0])) == -math.inf
    # d = 1 different, d = 2 same: t < 1 -> 1 correct, <= 1 -> 0, <= 2 -> 1; the tie between
    # -inf and +inf goes to the smaller
    distances, same = torch.tensor([1.0, 2.0]), torch.tensor([0, 1])
    assert best_threshold(distances, same) == -math.inf
    assert verification_accuracy(distances, same, -math.inf) == 0.5
    assert verification_accuracy(distances, same, math.inf) == 0.5


def _brute_force(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Best accuracy over every candidate threshold (all distances, all midpoints, +-inf), and
    the smallest candidate between distinct values (midpoint or +-inf) that reaches it."""
    values = np.unique(distances)
    midpoints = (values[:-1] + values[1:]) / 2
    candidates = np.sort(np.concatenate([[-np.inf, np.inf], values, midpoints]))
    accuracy = np.array([((distances <= t) == same).mean() for t in candidates])
    best = accuracy.max()
    returnable = np.concatenate([[-np.inf], midpoints, [np.inf]])
    for t in returnable:  # ascending
        if ((distances <= t) == same).mean() == best:
            return float(best), float(t)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", range(6))
def test_best_threshold_against_a_brute_force_sweep(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(5, 120))
    same = rng.random(size) < rng.uniform(0.2, 0.8)
    distances = rng.normal(np.where(same, 1.0, 1.6), 0.5)
    if seed % 2:  # coarse values: many ties, across labels too
        distances = np.round(distances, 1)
    best, threshold = _brute_force(distances, same)
    got = best_threshold(torch.from_numpy(distances), torch.from_numpy(same))
    if math.isinf(threshold):
        assert got == threshold
    else:
        assert got == pytest.approx(threshold, abs=1e-6)
    accuracy = verification_accuracy(torch.from_numpy(distances), torch.from_numpy(same), got)
    assert accuracy == pytest.approx(best)


def test_separable_pairs_score_one():
    generator = torch.Generator().manual_seed(0)
    same = torch.rand(400, generator=generator) < 0.5
    distances = torch.rand(400, generator=generator) + torch.where(same, 0.0, 2.0)  # [0,1) | [2,3)
    threshold = best_threshold(distances, same)
    assert distances[same].max() < threshold < distances[~same].min()
    # the midpoint of the gap
    assert threshold == pytest.approx(float(distances[same].max() + distances[~same].min()) / 2)
    assert verification_accuracy(distances, same, threshold) == 1.0


def test_identical_distributions_are_at_chance():
    generator = torch.Generator().manual_seed(1)
    same = torch.rand(2, 20_000, generator=generator) < 0.5
    distances = torch.rand(2, 20_000, generator=generator)  # independent of the labels
    threshold, accuracy = fit_and_score(distances[0], same[0], distances[1], same[1])
    # fitting picks up noise only; on fresh pairs the rule is a coin flip (sd 0.0035)
    assert accuracy == pytest.approx(0.5, abs=0.02)


def test_fit_and_score_applies_the_fitted_threshold():
    fit_distances = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    fit_same = torch.tensor([1, 1, 0, 1, 0, 0])  # t = 0.25 (test_best_threshold_worked)
    test_distances = torch.tensor([0.2, 0.3, 0.1, 0.9])
    test_same = torch.tensor([1, 1, 0, 0])
    # 0.2 <= 0.25 same: right; 0.3 > 0.25: wrong; 0.1 called same: wrong; 0.9: right -> 2 / 4
    threshold, accuracy = fit_and_score(fit_distances, fit_same, test_distances, test_same)
    assert threshold == pytest.approx(0.25, abs=1e-7)
    assert accuracy == 0.5


def test_bad_labels_and_distances_are_refused():
    distances = torch.tensor([0.1, 0.2])
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        best_threshold(distances, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="finite"):
        best_threshold(torch.tensor([0.1, math.nan]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="shapes"):
        verification_accuracy(distances, torch.tensor([1]), 0.5)
    with pytest.raises(ValueError, match="no fitting pairs"):
        best_threshold(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="NaN"):
        verification_accuracy(distances, torch.tensor([0, 1]), math.nan)


# --- spherical distances, ROC AUC, cross-validated accuracy ----------------------------------


def test_spherical_distances_worked():
    embeddings = torch.tensor(
        [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]], dtype=torch.float64
    )
    pairs = torch.tensor([[0, 1], [0, 2], [0, 0], [0, 3]])
    # a right angle, opposite points, a self pair, arccos(0.6)
    expected = torch.tensor([math.pi / 2, math.pi, 0.0, math.acos(0.6)], dtype=torch.float64)
    got = pair_distances(embeddings, pairs, metric="spherical")
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="metric"):
        pair_distances(embeddings, pairs, metric="cosine")


def test_roc_auc_worked():
    # same pairs at 1 and 3, different pairs at 2 and 3: of the 4 couples, (1, 2) and (1, 3) are
    # right, (3, 2) wrong, (3, 3) a tie (one half): AUC = 2.5 / 4
    distances = torch.tensor([1.0, 3.0, 2.0, 3.0])
    same = torch.tensor([True, True, False, False])
    assert roc_auc(distances, same) == 2.5 / 4
    assert roc_auc(torch.tensor([0.0, 1.0]), torch.tensor([1, 0])) == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    distances = rng.integers(0, 12, size=300).astype(float)  # many ties
    same = rng.random(300) < 0.4
    expected = roc_auc_score(same, -distances)
    assert roc_auc(torch.from_numpy(distances), torch.from_numpy(same)) == pytest.approx(
        expected, abs=1e-12
    )


def test_roc_auc_needs_both_labels():
    with pytest.raises(ValueError, match="same and different"):
        roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([True, True]))


def _cross_validated_reference(distances: np.ndarray, same: np.ndarray, folds: int) -> float:
    """Folds by rank within each label; threshold by a brute-force sweep of the other folds."""
    fold = np.empty(len(same), dtype=int)
    for label in (True, False):
        members = np.flatnonzero(same == label)
        fold[members] = np.arange(len(members)) % folds
    scores = []
    for f in range(folds):
        fit, held = fold != f, fold == f
        _, threshold = _brute_force(distances[fit], same[fit])
        scores.append(np.mean((distances[held] <= threshold) == same[held]))
    return float(np.mean(scores))


@pytest.mark.parametrize("seed", range(3))
def test_cross_validated_accuracy_against_a_loop(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(200) < 0.5
    distances = np.where(same, rng.normal(1.0, 0.5, 200), rng.normal(2.0, 0.5, 200))
    got = cross_validated_accuracy(torch.from_numpy(distances), torch.from_numpy(same), folds=10)
    assert got == pytest.approx(_cross_validated_reference(distances, same, 10), abs=1e-12)


def test_cross_validated_accuracy_of_separable_pairs_is_one():
    distances = torch.cat([torch.rand(50), 2 + torch.rand(50)])
    same = torch.arange(100) < 50
    assert cross_validated_accuracy(distances, same) == 1.0
    with pytest.raises(ValueError, match="folds"):
        cross_validated_accuracy(distances[:5], same[:5], folds=10)
