"""Retrieval by one feature block: L2 nearest neighbours over a gallery, and precision@k.

The ``disentangle`` spec (section 5, Fig. 4) retrieves the nearest CelebA test images of a query
by Euclidean distance on one sub-vector (or a concatenation, ``feature_blocks``) and shows the
top 7; as a suite extra (section 6) identity precision@7 scores the identity sub-vector: the
fraction of a query's 7 neighbours that show the query's person.

``nearest_neighbours`` ranks by squared distance ||q||^2 - 2 q.g + ||g||^2 in float64, query
chunk by query chunk (a 20K gallery fits), with ties to the lower gallery index (a stable sort);
a query can be left out of its own neighbours (``exclude``: its position in the gallery).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["nearest_neighbours", "precision_at_k"]


def nearest_neighbours(
    queries: Tensor,
    gallery: Tensor,
    k: int,
    exclude: Tensor | None = None,
    chunk: int = 512,
) -> Tensor:
    """The k gallery rows nearest to each query in Euclidean distance, nearest first.

    Args:
        queries: (Q, D) query features.
        gallery: (N, D) gallery features.
        k: Neighbours per query, 1 <= k <= N (N - 1 with ``exclude``).
        exclude: Optional integer (Q,): a gallery position left out of each query's neighbours
            (the query itself when the queries are gallery rows); -1 leaves none out.
        chunk: Queries ranked at once (memory: chunk x N float64).

    Returns:
        long (Q, k) gallery positions on the queries' device, by increasing distance; equal
        distances in increasing position.
    """
    if queries.dim() != 2 or gallery.dim() != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries (Q, D) and gallery (N, D) must share D, got {tuple(queries.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    available = len(gallery) - (1 if exclude is not None else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}] for a gallery of {len(gallery)}, got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if exclude is not None:
        exclude = _checked_exclude(exclude, len(queries), len(gallery))
    g = gallery.detach().to(queries.device, torch.float64)
    g_norms = g.square().sum(1)  # (N,)
    found = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk].detach().double()  # (c, D)
        distances = q.square().sum(1, keepdim=True) - 2 * q @ g.T + g_norms  # (c, N)
        if exclude is not None:
            own = exclude[start : start + chunk].to(q.device)
            rows = torch.nonzero(own >= 0).flatten()
            distances[rows, own[rows]] = math.inf
        order = torch.sort(distances, dim=1, stable=True).indices  # (c, N)
        found.append(order[:, :k])
    if not found:
        return torch.empty(0, k, dtype=torch.long, device=queries.device)
    return torch.cat(found)


def precision_at_k(neighbours: Tensor, query_labels: Tensor, gallery_labels: Tensor) -> Tensor:
    """Per query, the fraction of its neighbours whose label equals the query's.

    Args:
        neighbours: Integer (Q, k) gallery positions (``nearest_neighbours``).
        query_labels: (Q,) label of each query (e.g. its identity).
        gallery_labels: (N,) label of each gallery row.

    Returns:
        float64 (Q,) in [0, 1]; its mean is precision@k (identity precision@7 for k = 7).
    """
    if neighbours.dim() != 2 or neighbours.shape[0] != len(query_labels):
        raise ValueError(
            f"neighbours must be (Q, k) with Q = {len(query_labels)} query labels, got "
            f"{tuple(neighbours.shape)}"
        )
    if neighbours.numel() and (
        int(neighbours.min()) < 0 or int(neighbours.max()) >= len(gallery_labels)
    ):
        raise ValueError(
            f"neighbours index {int(neighbours.min())}..{int(neighbours.max())}, but the gallery "
            f"has {len(gallery_labels)} labels"
        )
    labels = gallery_labels.to(neighbours.device)[neighbours]  # (Q, k)
    hits = labels == query_labels.to(neighbours.device)[:, None]
    return hits.double().mean(1)


def _checked_exclude(exclude: Tensor, queries: int, gallery: int) -> Tensor:
    if exclude.shape != (queries,) or exclude.dtype.is_floating_point:
        raise ValueError(
            f"exclude must be integer ({queries},), one gallery position per query, got "
            f"{exclude.dtype} {tuple(exclude.shape)}"
        )
    if exclude.numel() and (int(exclude.min()) < -1 or int(exclude.max()) >= gallery):
        raise ValueError(f"exclude holds positions outside -1..{gallery - 1}")
    return exclude.long()
