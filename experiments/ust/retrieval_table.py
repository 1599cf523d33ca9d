"""Cross-domain retrieval on the test split (thesis Tables 4.3 / 4.4; spec section 6 "Recall@k").

Queries are the test persons' item views I_A^m (``masked_a``: the person inside m_A, white
outside); the database is the test split's catalog items, each once (persons wearing one item
share its row); each query has exactly one correct item, the one its pair names. Rankings:

- ``ours``: Euclidean distance between style codes, E^S(I_A^m) against E^S(I_B)
  (``USTModule.style_code``);
- ``lpips_alex``: LPIPS-Alex between I_A^m and I_B (``LPIPS.pairwise``: every pair, exactly);
- ``rerank_k<kappa>``: ours, its top kappa reordered by LPIPS-Alex (``rerank``), so that its
  recall at k >= kappa is ours (checked here for every k, exactly);
- ``colour_histogram``: L1 between 8 x 4 x 4 HSV histograms of the masked pixels (the spec's
  [proposed] baseline; the item's own clothing mask on the catalog side).

Each row: recall@k for k in 1, 5, 20, 50 (a k at or above the database size gives 1.0), the
feature size and chance (k / N). ``rankings`` keeps the orders for the figure.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from experiments.ust.assertions import batched, unit
from experiments.ust.split_images import Images
from lightning_modules.components.lpips import LPIPS
from lightning_modules.ust.colour_histogram import colour_histogram, histogram_l1_distance
from lightning_modules.ust.retrieval import (
    RECALL_KS,
    euclidean_ranking,
    rank_by,
    ranks_of_correct,
    recall_at_k,
    rerank,
)

__all__ = ["Database", "database_of", "retrieval_results", "style_codes"]


class Database:
    """The test split's distinct catalog items and, per query, the index of its own."""

    def __init__(self, images: Images) -> None:
        first: dict[str, int] = {}
        for row, item in enumerate(images.items):
            first.setdefault(item, row)
        self.rows = torch.tensor(list(first.values()))
        self.names = list(first)
        position = {name: i for i, name in enumerate(self.names)}
        self.correct = torch.tensor([position[item] for item in images.items])

    def __len__(self) -> int:
        return len(self.names)


def database_of(images: Images) -> Database:
    """The distinct items of ``images`` (in first-seen order) and each query's correct one."""
    return Database(images)


def style_codes(module, images: Tensor, mask: Tensor | None, batch_size: int = 64) -> Tensor:
    """(N, SD) style codes: persons with their m_A (masked), or catalog items (``mask`` None)."""
    module.eval()
    inputs = (images,) if mask is None else (images, mask)
    return batched(module.style_code, *inputs, batch_size=batch_size)


def _row(order: Tensor, correct: Tensor, dim: int | str, ks: tuple[int, ...]) -> dict[str, Any]:
    ranks = ranks_of_correct(order, correct)
    return {"dim": dim, "recall": recall_at_k(ranks, ks), "ranks": ranks}


def retrieval_results(
    module,
    images: Images,
    lpips_alex: LPIPS,
    kappas: tuple[int, ...] = (5, 20, 50),
    ks: tuple[int, ...] = RECALL_KS,
) -> dict[str, Any]:
    """Every ranking's recall@k, chance, the re-ranking identity check and the orders.

    Returns ``{"rows": {name: {"dim", "recall": {k: value}}}, "chance": {k: k / N},
    "database_size", "queries", "rerank_equal_at_k_ge_kappa": bool, "rankings": {name: (Q, N)},
    "database": Database}``.
    """
    db = database_of(images)
    items, item_masks = images["image_b"][db.rows], images["mask_b"][db.rows]
    queries = images["masked_a"]
    codes_q = style_codes(module, images["image_a"], images["mask_a"])
    codes_db = style_codes(module, items, None)
    orders = {"ours": euclidean_ranking(codes_q, codes_db)}
    lpips = lpips_alex.pairwise(queries, items)
    orders["lpips_alex"] = rank_by(lpips)
    for kappa in kappas:
        orders[f"rerank_k{kappa}"] = rerank(orders["ours"], lpips, kappa)
    hist_q = colour_histogram(unit(images["image_a"]), images["mask_a"])
    hist_db = colour_histogram(unit(items), item_masks)
    orders["colour_histogram"] = rank_by(histogram_l1_distance(hist_q, hist_db))
    dims = {
        "ours": codes_q.shape[1],
        "lpips_alex": _lpips_dim(lpips_alex, queries[:1]),
        "colour_histogram": hist_q.shape[1],
    }
    rows = {
        name: _row(order, db.correct, dims.get(name, "-"), ks) for name, order in orders.items()
    }
    every_k = tuple(range(1, len(db) + 1))
    ours_all = recall_at_k(rows["ours"]["ranks"], every_k)
    equal = all(
        recall_at_k(rows[f"rerank_k{kappa}"]["ranks"], every_k)[k] == ours_all[k]
        for kappa in kappas
        for k in every_k
        if k >= kappa
    )
    for row in rows.values():
        row.pop("ranks")
    n = len(db)
    return {
        "rows": rows,
        "chance": {k: min(k / n, 1.0) for k in ks},
        "database_size": n,
        "queries": len(images),
        "rerank_equal_at_k_ge_kappa": equal,
        "rankings": orders,
        "database": db,
    }


@torch.no_grad()
def _lpips_dim(lpips: LPIPS, image: Tensor) -> int:
    """The size of LPIPS's stacked features of one image (the thesis's "640K" at 256 x 256)."""
    device = lpips.head0.device
    return sum(f[0].numel() for f in lpips.features(image.to(device).float()))
