"""Per-label decision thresholds chosen by grid search on Hamming loss (multi-label classifiers).

Le & Lee: grid 0.01 ... 1.00, one threshold per attribute, searched on the test split; the tuned
thresholds give the hard labels of the classifier (FFHQ labels, and an attribute judge for the
face-editing methods).
"""

from __future__ import annotations

import torch


def threshold_grid(step: float = 0.01) -> torch.Tensor:
    """Thresholds ``step, 2*step, ..., 1.0`` in float64: 100 values from 0.01 to 1.00 by default."""
    count = round(1.0 / step)
    if count < 1 or abs(count * step - 1.0) > 1e-9:
        raise ValueError(f"threshold grid step must divide 1.0, got {step}")
    return torch.arange(1, count + 1, dtype=torch.float64) / count


def search_thresholds(
    probs: torch.Tensor, target: torch.Tensor, grid: torch.Tensor, chunk_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every label independently, the grid threshold with the lowest Hamming loss.

    The prediction is ``probs >= tau``; ties go to the smallest tau (first minimum along the sorted
    grid). Rows are processed in chunks so memory stays at ``chunk_size x len(grid) x L`` booleans.

    Args:
        probs: (n, L) probabilities.
        target: (n, L) labels in {0, 1}.
        grid: (G,) candidate thresholds, ascending.
        chunk_size: Rows per chunk.

    Returns:
        ``taus`` (L,) float64 chosen thresholds and ``hamming`` (L,) float64 Hamming loss at them.
    """
    if probs.shape != target.shape or probs.dim() != 2:
        raise ValueError(
            f"probs {tuple(probs.shape)} and target {tuple(target.shape)} must be (n, L)"
        )
    if probs.shape[0] == 0:
        raise ValueError("threshold search needs at least one example")
    if grid.dim() != 1 or not torch.all(grid[1:] > grid[:-1]):
        raise ValueError("grid must be a 1-D ascending tensor")
    grid = grid.to(torch.float64).view(1, -1, 1)
    errors = torch.zeros(grid.shape[1], probs.shape[1], dtype=torch.int64)
    for start in range(0, probs.shape[0], chunk_size):
        p = probs[start : start + chunk_size].detach().to("cpu", torch.float64).unsqueeze(1)
        y = target[start : start + chunk_size].detach().to("cpu").bool().unsqueeze(1)
        errors += ((p >= grid) != y).sum(0)
    best = torch.argmin(errors, dim=0)  # first minimum = smallest tau on ties
    taus = grid.view(-1)[best]
    hamming = errors.gather(0, best.view(1, -1)).view(-1).double() / probs.shape[0]
    return taus, hamming


def hamming_per_label(
    probs: torch.Tensor, target: torch.Tensor, taus: torch.Tensor
) -> torch.Tensor:
    """(L,) Hamming loss of ``probs >= taus`` (taus broadcast per label) against ``target``."""
    pred = probs.to(torch.float64) >= taus.to(torch.float64).view(1, -1)
    return (pred != target.bool()).double().mean(0)
