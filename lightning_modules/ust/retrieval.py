"""Cross-domain retrieval for UST: rankings, coarse-to-fine re-ranking and Recall@k.

Thesis ch. 4 (Tables 4.3, 4.4), spec ``ust`` sections 5 and 6: each query (a test person's
masked item, I_A^m) has exactly one correct database item (its catalog image I_B).

- ``euclidean_ranking``: the database indices of each query by ascending Euclidean distance
  between codes (style codes for "Ours"), ties to the lower index, so rankings are deterministic;
  ``rank_by`` does the same for any (Q, N) distance matrix (the colour-histogram baseline's L1).
- ``rerank``: the coarse-to-fine step, the top-kappa of a ranking reordered by a second distance
  (LPIPS-Alex in the thesis), ranks > kappa unchanged. Only the top-kappa entries of the second
  distance are read: ``top_pairs`` lists the (query, db) pairs a caller has to score, and the
  rest of the matrix may be NaN. Hence recall@k for k >= kappa equals the first ranking's exactly.
- ``ranks_of_correct`` and ``recall_at_k``: the 1-based rank of each query's correct item and the
  fraction of queries whose item ranks <= k, k in {1, 5, 20, 50}.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = [
    "RECALL_KS",
    "euclidean_ranking",
    "rank_by",
    "ranks_of_correct",
    "recall_at_k",
    "rerank",
    "top_pairs",
]

#: The k of the thesis's retrieval tables.
RECALL_KS: tuple[int, ...] = (1, 5, 20, 50)


def _check_matrix(x: Tensor, name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d tensor, got shape {tuple(x.shape)}")


def _check_order(order: Tensor) -> None:
    """``order`` must be (Q, N) integer, each row a permutation of 0 .. N-1."""
    _check_matrix(order, "order")
    if order.is_floating_point() or order.dtype == torch.bool:
        raise ValueError(f"order must hold integer indices, got {order.dtype}")
    arange = torch.arange(order.shape[1], device=order.device)
    bad = (order.sort(dim=1).values != arange).any(dim=1)
    if bad.any():
        raise ValueError(
            f"each row of order must be a permutation of 0 .. {order.shape[1] - 1}; "
            f"row {int(bad.nonzero()[0])} is not"
        )


def _check_kappa(kappa: int) -> None:
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")


def rank_by(distances: Tensor) -> Tensor:
    """(Q, N) distances -> (Q, N) long: each row's indices by ascending distance, ties to the
    lower index (stable sort)."""
    _check_matrix(distances, "distances")
    return distances.sort(dim=1, stable=True).indices


def euclidean_ranking(queries: Tensor, database: Tensor) -> Tensor:
    """(Q, D) queries, (N, D) database -> (Q, N) long: database indices by ascending distance.

    Distances are computed pairwise in float64 without the matrix-product shortcut, so equal
    database rows get equal distances; the sort is stable, so ties go to the lower index.
    """
    _check_matrix(queries, "queries")
    _check_matrix(database, "database")
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries {tuple(queries.shape)} and database {tuple(database.shape)} must have the "
            "same code dimension"
        )
    distance = torch.cdist(
        queries.double(), database.double(), compute_mode="donot_use_mm_for_euclid_dist"
    )
    return rank_by(distance)


def top_pairs(order: Tensor, kappa: int) -> Tensor:
    """The (query, db) index pairs ``rerank`` reads: (Q * min(kappa, N), 2) long, row-major.

    Score these pairs with the second distance, write the scores into a (Q, N) matrix (NaN
    elsewhere is fine), and pass it to ``rerank`` with the same ``order`` and ``kappa``.
    """
    _check_order(order)
    _check_kappa(kappa)
    head = order[:, :kappa]
    query = torch.arange(order.shape[0], device=order.device)[:, None].expand_as(head)
    return torch.stack([query.reshape(-1), head.reshape(-1)], dim=1)


def rerank(order: Tensor, distances: Tensor, kappa: int) -> Tensor:
    """Reorder each query's top-``kappa`` entries of ``order`` by ``distances``; keep the rest.

    Args:
        order: (Q, N) long, each row a ranking of the database (e.g. ``euclidean_ranking``).
        distances: (Q, N) second distance, ``distances[q, j]`` between query q and database
            item j. Only the entries at ``top_pairs(order, kappa)`` are read; the others may be
            anything, NaN included.
        kappa: How many of the top entries to reorder, >= 1; kappa > N reorders whole rows.

    Returns:
        (Q, N) long: the top-kappa by ascending ``distances`` (stable: ties keep their order in
        ``order``), then ``order[:, kappa:]`` unchanged.

    Raises:
        ValueError: bad shapes, kappa < 1, or a NaN among the entries read (naming its query).
    """
    _check_order(order)
    _check_kappa(kappa)
    if distances.shape != order.shape:
        raise ValueError(
            f"distances {tuple(distances.shape)} must have order's shape {tuple(order.shape)}"
        )
    head = order[:, :kappa]
    scores = distances.gather(1, head)
    missing = scores.isnan().any(dim=1)
    if missing.any():
        raise ValueError(
            f"distances is NaN at a top-{kappa} entry of query {int(missing.nonzero()[0])}: "
            "score every pair of top_pairs(order, kappa)"
        )
    reordered = head.gather(1, scores.sort(dim=1, stable=True).indices)
    return torch.cat([reordered, order[:, kappa:]], dim=1)


def ranks_of_correct(order: Tensor, correct: Tensor) -> Tensor:
    """(Q, N) rankings, (Q,) long correct database indices -> (Q,) long 1-based ranks."""
    _check_order(order)
    if correct.shape != order.shape[:1] or correct.is_floating_point():
        raise ValueError(
            f"correct must be (Q,) = ({order.shape[0]},) integer indices, got {correct.dtype} "
            f"{tuple(correct.shape)}"
        )
    out = (correct < 0) | (correct >= order.shape[1])
    if out.any():
        q = int(out.nonzero()[0])
        raise ValueError(
            f"correct[{q}] = {int(correct[q])} is out of range for a database of {order.shape[1]}"
        )
    return (order == correct[:, None]).long().argmax(dim=1) + 1


def recall_at_k(ranks: Tensor, ks: Iterable[int] = RECALL_KS) -> dict[int, float]:
    """{k: fraction of queries with rank <= k} from (Q,) 1-based ranks.

    A k at or above the database size N gives 1.0: every rank is <= N.
    """
    if ranks.ndim != 1 or ranks.numel() == 0:
        raise ValueError(f"ranks must be a non-empty (Q,) tensor, got shape {tuple(ranks.shape)}")
    if (ranks < 1).any():
        raise ValueError(f"ranks are 1-based, got a minimum of {ranks.min().item()}")
    recalls = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"each k must be >= 1, got {k}")
        recalls[int(k)] = (ranks <= k).double().mean().item()
    return recalls
