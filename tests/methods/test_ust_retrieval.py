"""UST's retrieval pieces (spec ``ust`` section 6, Recall@k and the colour-histogram baseline;
CPU unit tests): rankings, re-rankings, ranks and recalls against naive Python loops (ties
included), re-ranked recall@k for k >= kappa equal to the first ranking's, a second distance
read only at ``top_pairs``, RGB -> HSV against ``colorsys`` and ``skimage``, the histogram on a
hand-worked image and against ``numpy.histogramdd``, and the error messages.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from skimage.color import rgb2hsv

from lightning_modules.ust import (
    colour_histogram,
    euclidean_ranking,
    histogram_l1_distance,
    rank_by,
    ranks_of_correct,
    recall_at_k,
    rerank,
    rgb_to_hsv,
    top_pairs,
)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _codes(q: int, n: int, d: int = 3, seed: int = 0):
    """Small-integer codes (many exact distance ties) and a second distance with ties too."""
    gen = _seeded(seed)
    queries = torch.randint(0, 3, (q, d), generator=gen).float()
    database = torch.randint(0, 3, (n, d), generator=gen).float()
    second = torch.randint(0, 5, (q, n), generator=gen).float()
    correct = torch.randint(0, n, (q,), generator=gen)
    return queries, database, second, correct


# ------------------------------------------------------------------ naive references


def _naive_ranking(queries: torch.Tensor, database: torch.Tensor) -> list[list[int]]:
    out = []
    for query in queries.double().numpy():
        dist = [float(np.sqrt(((query - row) ** 2).sum())) for row in database.double().numpy()]
        out.append(sorted(range(len(dist)), key=lambda j, dist=dist: (dist[j], j)))
    return out


def _naive_rerank(order: list[list[int]], second: torch.Tensor, kappa: int) -> list[list[int]]:
    out = []
    for q, row in enumerate(order):
        head = sorted(row[:kappa], key=lambda j, q=q: float(second[q, j]))  # sorted is stable
        out.append(head + row[kappa:])
    return out


def _naive_ranks(order: list[list[int]], correct: torch.Tensor) -> list[int]:
    return [row.index(int(c)) + 1 for row, c in zip(order, correct, strict=True)]


def _naive_recall(order: list[list[int]], correct: torch.Tensor, ks) -> dict[int, float]:
    ranks = _naive_ranks(order, correct)
    return {k: sum(r <= k for r in ranks) / len(ranks) for k in ks}


# ------------------------------------------------------------------ rankings and recall


@pytest.mark.parametrize("seed", range(3))
def test_euclidean_ranking_equals_the_loop_with_ties_to_the_lower_index(seed):
    queries, database, _, _ = _codes(12, 30, seed=seed)
    database[7] = database[3]  # an exact duplicate: 3 must come before 7
    order = euclidean_ranking(queries, database)
    assert order.dtype == torch.long and order.shape == (12, 30)
    assert order.tolist() == _naive_ranking(queries, database)
    assert torch.equal(rank_by(torch.cdist(queries.double(), database.double())), order)


@pytest.mark.parametrize("kappa", [1, 3, 5, 20, 50, 80])
def test_rerank_equals_the_loop_and_keeps_ranks_above_kappa(kappa):
    queries, database, second, _ = _codes(15, 60, seed=kappa)
    order = euclidean_ranking(queries, database)
    reranked = rerank(order, second, kappa)
    assert reranked.tolist() == _naive_rerank(order.tolist(), second, kappa)
    assert torch.equal(reranked[:, kappa:], order[:, kappa:])
    assert torch.equal(reranked[:, :kappa].sort(1).values, order[:, :kappa].sort(1).values)


def test_ranks_and_recall_equal_the_loop():
    queries, database, _, correct = _codes(40, 25, seed=5)
    order = euclidean_ranking(queries, database)
    ranks = ranks_of_correct(order, correct)
    assert ranks.dtype == torch.long
    assert ranks.tolist() == _naive_ranks(order.tolist(), correct)
    ks = (1, 2, 5, 20, 50)
    assert recall_at_k(ranks, ks) == pytest.approx(_naive_recall(order.tolist(), correct, ks))


def test_recall_on_known_ranks():
    ranks = torch.tensor([1, 2, 6, 30, 51])
    assert recall_at_k(ranks) == pytest.approx({1: 0.2, 5: 0.4, 20: 0.6, 50: 0.8})
    assert recall_at_k(ranks, ks=(51, 1000)) == {51: 1.0, 1000: 1.0}  # k >= N gives 1.0


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kappa", [1, 5, 20, 50])
def test_reranked_recall_at_k_from_kappa_on_equals_the_first_ranking(kappa, seed):
    """The spec's property: ranks > kappa are unchanged, so recall@k (k >= kappa) is exact."""
    gen = _seeded(seed)
    q, n = 80, 120
    order = euclidean_ranking(torch.randn(q, 8, generator=gen), torch.randn(n, 8, generator=gen))
    correct = torch.randint(0, n, (q,), generator=gen)
    second = torch.rand(q, n, generator=gen)
    ks = list(range(kappa, n + 3))
    before = recall_at_k(ranks_of_correct(order, correct), ks)
    after = recall_at_k(ranks_of_correct(rerank(order, second, kappa), correct), ks)
    assert after == before  # exactly, not approximately


def test_only_top_pairs_of_the_second_distance_are_read():
    queries, database, second, _ = _codes(6, 20, seed=1)
    order, kappa = euclidean_ranking(queries, database), 4
    pairs = top_pairs(order, kappa)
    assert pairs.shape == (6 * kappa, 2)
    assert pairs[:kappa].tolist() == [[0, j] for j in order[0, :kappa].tolist()]
    sparse = torch.full_like(second, float("nan"))
    sparse[pairs[:, 0], pairs[:, 1]] = second[pairs[:, 0], pairs[:, 1]]
    assert torch.equal(rerank(order, sparse, kappa), rerank(order, second, kappa))
    sparse[3, order[3, kappa - 1]] = float("nan")
    with pytest.raises(ValueError, match="NaN at a top-4 entry of query 3"):
        rerank(order, sparse, kappa)


def test_retrieval_errors_are_explained():
    order = euclidean_ranking(torch.zeros(3, 2), torch.rand(5, 2))
    with pytest.raises(ValueError, match="same code dimension"):
        euclidean_ranking(torch.zeros(3, 2), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="kappa must be >= 1, got 0"):
        rerank(order, torch.zeros(3, 5), 0)
    with pytest.raises(ValueError, match="must have order's shape"):
        rerank(order, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="row 1 is not"):
        rerank(torch.tensor([[0, 1, 2], [0, 0, 2]]), torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match=r"correct\[2\] = 5 is out of range"):
        ranks_of_correct(order, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="correct must be"):
        ranks_of_correct(order, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="1-based"):
        recall_at_k(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(torch.tensor([1, 2]), ks=(0,))


# ------------------------------------------------------------------ colour histogram


def _special_colours() -> torch.Tensor:
    """(1, 3, 1, P): greys, black, white, primaries, secondaries, ties in the max, a hue of -0."""
    pixels = [
        (0, 0, 0), (1, 1, 1), (0.5, 0.5, 0.5), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0),
        (0, 1, 1), (1, 0, 1), (0.2, 0.7, 0.7), (0.7, 0.7, 0.2), (0.7, 0.2, 0.7), (1, 0, 1e-9),
    ]  # fmt: skip
    return torch.tensor(pixels, dtype=torch.float64).T[None, :, None, :]


def _circular_close(a: np.ndarray, b: np.ndarray, atol: float = 1e-9) -> bool:
    gap = np.abs(a - b) % 1.0
    return bool((np.minimum(gap, 1 - gap) <= atol).all())


def test_rgb_to_hsv_equals_colorsys_and_skimage():
    rgb = torch.cat([torch.rand(1, 3, 1, 200, generator=_seeded(), dtype=torch.float64),
                     _special_colours()], dim=3)  # fmt: skip
    hsv = rgb_to_hsv(rgb)[0, :, 0].T.numpy()  # (P, 3)
    pixels = rgb[0, :, 0].T.numpy()
    reference = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
    assert _circular_close(hsv[:, 0], reference[:, 0])
    np.testing.assert_allclose(hsv[:, 1:], reference[:, 1:], rtol=0, atol=1e-12)
    sk = rgb2hsv(pixels[None])[0]
    assert _circular_close(hsv[:, 0], sk[:, 0])
    np.testing.assert_allclose(hsv[:, 1:], sk[:, 1:], rtol=0, atol=1e-12)
    assert (hsv[:, 0] >= 0).all() and (hsv[:, 0] < 1).all()


def test_a_hue_rounding_to_one_wraps_to_zero():
    hsv = rgb_to_hsv(torch.tensor([1.0, 0.0, 1e-9]).view(1, 3, 1, 1))  # (-1e-9 / 6) % 1.0 == 1.0
    assert hsv[0, 0].item() == 0.0


def test_histogram_of_a_hand_worked_image():
    """12 red and 4 blue pixels in the mask, 4 green ones outside; a half-grey, half-white one.

    Red (1, 0, 0) is (h, s, v) = (0, 1, 1): bins (0, 3, 3), joint (0 * 4 + 3) * 4 + 3 = 15.
    Blue (0, 0, 1) is (2/3, 1, 1): bins (5, 3, 3), joint 95. Grey 0.5 is (0, 0, 0.5): joint 2;
    white is (0, 0, 1): v clamped into bin 3, joint 3.
    """
    images = torch.zeros(2, 3, 5, 4)
    images[0, 0, :3] = 1  # red rows 0-2
    images[0, 2, 3] = 1  # a blue row
    images[0, 1, 4] = 1  # a green row, masked out
    images[1, :, :, :2], images[1, :, :, 2:] = 0.5, 1.0
    mask = torch.ones(2, 1, 5, 4)
    mask[0, :, 4] = 0
    hist = colour_histogram(images, mask)
    assert hist.shape == (2, 128)
    expected = torch.zeros(2, 128)
    expected[0, 15], expected[0, 95], expected[1, 2], expected[1, 3] = 0.75, 0.25, 0.5, 0.5
    torch.testing.assert_close(hist, expected, rtol=0, atol=0)


@pytest.mark.parametrize("levels", [None, 4, 8])
def test_histogram_equals_numpy_histogramdd(levels):
    """Random images (quantised ones land on bin edges) and random masks."""
    gen = _seeded(levels or 0)
    images = torch.rand(3, 3, 16, 12, generator=gen)
    if levels:
        images = (images * levels).floor() / levels
    mask = (torch.rand(3, 1, 16, 12, generator=gen) > 0.3).float()
    hist = colour_histogram(images, mask)
    hsv = rgb_to_hsv(images)
    edges = [np.linspace(0, 1, n + 1) for n in (8, 4, 4)]
    for i in range(3):
        inside = mask[i, 0].bool()
        samples = hsv[i][:, inside].T.double().numpy()
        counts = np.histogramdd(samples, bins=edges)[0].reshape(-1)
        np.testing.assert_allclose(hist[i].numpy(), counts / counts.sum(), rtol=1e-6, atol=0)
        torch.testing.assert_close(hist[i].sum(), torch.tensor(1.0))


def test_histogram_l1_distance_ranks_each_image_first_among_its_own():
    gen = _seeded(3)
    images, mask = torch.rand(6, 3, 8, 8, generator=gen), torch.ones(6, 1, 8, 8)
    hist = colour_histogram(images, mask)
    dist = histogram_l1_distance(hist, hist)
    naive = (hist[:, None].double() - hist[None].double()).abs().sum(-1)
    torch.testing.assert_close(dist, naive)
    ranks = ranks_of_correct(rank_by(dist), torch.arange(6))
    assert recall_at_k(ranks, ks=(1,)) == {1: 1.0}


def test_histogram_errors_are_explained():
    images, mask = torch.rand(3, 3, 4, 4), torch.ones(3, 1, 4, 4)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"empty mask for image\(s\) \[1\]"):
        colour_histogram(images, mask)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        colour_histogram(images * 2 - 1, torch.ones(3, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        colour_histogram(images[:, :2], torch.ones(3, 1, 4, 4))
    with pytest.raises(ValueError, match="same D"):
        histogram_l1_distance(torch.zeros(2, 128), torch.zeros(3, 64))
