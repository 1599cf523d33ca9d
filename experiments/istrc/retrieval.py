"""Rank-1 identity retrieval of circle reconstructions (spec "Evaluation: Circle", assertion 4).

Each query E(x^_i) is matched to its nearest gallery item E(x_j) by cosine similarity (the gallery
is {E(x)} of the same test split, the query's own image included). A hit is a nearest item of the
query's identity; an exact hit is the query's own image (query i is image i). Chance is what a
uniformly random gallery item gives: the mean over queries of the share of the gallery holding the
query's identity (the own image counted), and 1 / N for the exact image.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rank1_retrieval"]


def rank1_retrieval(
    queries: Tensor, gallery: Tensor, query_identity: Tensor, gallery_identity: Tensor
) -> dict[str, float]:
    """Rank-1 identity and exact-image retrieval of ``queries`` in ``gallery``, beside chance.

    Args:
        queries: (N, D) query latents (E(x^)), any norm (compared by cosine).
        gallery: (N, D) gallery latents (E(x)); row i is query i's own image.
        query_identity: (N,) integer identities of the queries.
        gallery_identity: (N,) integer identities of the gallery.

    Returns:
        ``identity`` (fraction of queries whose nearest gallery item has their identity),
        ``identity_chance``, ``exact`` (nearest item is the own image), ``exact_chance`` and
        ``identity_over_chance`` (identity / identity_chance).
    """
    if queries.ndim != 2 or queries.shape != gallery.shape:
        raise ValueError(
            f"queries and gallery must be (N, D) alike, got {tuple(queries.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    n = queries.shape[0]
    if n == 0 or query_identity.shape != (n,) or gallery_identity.shape != (n,):
        raise ValueError(f"need N >= 1 queries with (N,) identities, got N = {n}")
    q = torch.nn.functional.normalize(queries.detach().cpu().double(), dim=1)
    g = torch.nn.functional.normalize(gallery.detach().cpu().double(), dim=1)
    query_identity, gallery_identity = query_identity.cpu(), gallery_identity.cpu()
    nearest = (q @ g.T).argmax(dim=1)
    same = gallery_identity[nearest] == query_identity
    shares = (query_identity[:, None] == gallery_identity[None, :]).double().mean(dim=1)
    identity, chance = same.double().mean().item(), shares.mean().item()
    return {
        "identity": identity,
        "identity_chance": chance,
        "identity_over_chance": identity / chance if chance > 0 else float("nan"),
        "exact": (nearest == torch.arange(n)).double().mean().item(),
        "exact_chance": 1.0 / n,
    }
