"""VEBI's interpretation of a classifier: the mu-lasso of Eq. 3.1 fitted on the response vectors
of the training images, per pool of layers (spec section 3 and 4, stage 3).

The "All" pool uses every entry of x; "OnlyConv" fits the lasso again on the conv entries alone
(the thesis reports the two pools' selected-feature counts side by side, so each is its own
fit). Labels are one-hot rows (multi-hot where an image has several). W is kept in x's full
indexing, zero outside the pool. The relevant (layer, filter) pairs of class c are the entries
with |W_jc| > 1e-8; "All" relevant pairs are their union over classes.

``center`` (spec decision 2, off as printed) subtracts the training means of x and of the labels
before the fit. ``shuffle_labels`` permutes the labels over the images before the fit: the
negative control, under which the selected filters must not matter more than random ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_modules.vebi.lasso import LassoSolution, relevant_pairs, solve_mu_lasso
from lightning_modules.vebi.responses import Pool, ResponseIndex

__all__ = ["Interpretation", "fit_interpretation"]


@dataclass(frozen=True)
class Interpretation:
    """The fitted map of one pool.

    Attributes:
        pool: ``all`` or ``only_conv``.
        mu: The l1 bound of every class's weights.
        weights: (m, C) float64 in x's indexing, zero outside the pool.
        per_class: (m, C) bool, the relevant entries of each class.
        selected: (m,) bool, the union over classes ("All" relevant pairs).
        solution: The solver's report (iterations, gaps, convergence) on the pool's columns.
    """

    pool: str
    mu: float
    weights: Tensor
    per_class: Tensor
    selected: Tensor
    solution: LassoSolution


def _one_hot(labels: Tensor, num_classes: int) -> Tensor:
    if labels.dim() == 2:
        return labels.double()
    return torch.nn.functional.one_hot(labels.long(), num_classes).double()


def fit_interpretation(
    x: Tensor,
    labels: Tensor,
    index: ResponseIndex,
    num_classes: int,
    pool: Pool = "all",
    mu: float = 10.0,
    center: bool = False,
    shuffle_labels: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_iter: int = 10_000,
    progress: bool = False,
) -> Interpretation:
    """Fit Eq. 3.1 on ``x`` (n, m) and ``labels`` (n,) class ids or (n, C) multi-hot."""
    if x.shape[1] != index.size:
        raise ValueError(f"x has {x.shape[1]} entries per image, the layer table {index.size}")
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} response vectors but {len(labels)} labels")
    targets = _one_hot(labels, num_classes)
    if shuffle_labels:
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
        targets = targets[order]
    columns = index.pool(pool)
    A = x[:, columns].to(device, torch.float64)
    B = targets.to(device)
    if center:
        A, B = A - A.mean(0), B - B.mean(0)
    solution = solve_mu_lasso(A, B, mu, max_iter=max_iter, progress=progress)
    weights = torch.zeros(index.size, num_classes, dtype=torch.float64)
    weights[columns] = solution.W.cpu()
    per_class, selected = relevant_pairs(weights)
    return Interpretation(pool, mu, weights, per_class, selected, solution)
