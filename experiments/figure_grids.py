"""Figure grids every method's analysis shares (UST, exemplar SR): images in [-1, 1] drawn in [0, 1]
with torchvision's ``make_grid`` / ``save_image``, one row per example."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from experiments.analysis_output import unit

__all__ = ["save_rows"]


def save_rows(columns: list[Tensor], path: Path, count: int = 8) -> Path:
    """A grid with one row per example: ``columns[c][i]`` (3, H, W) in [-1, 1] is row i, column c
    (every column the same size)."""
    rows = min(count, columns[0].shape[0])
    tiles = torch.stack([unit(col[:rows]) for col in columns], dim=1).flatten(0, 1)
    save_image(make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0), path)
    return path
