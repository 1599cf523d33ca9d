"""UST's figures (spec section 7), drawn with torchvision's ``make_grid`` / ``save_image``.

Images come in [-1, 1] and are drawn in [0, 1]; every grid has one row per example and a fixed
column order, named in the function's docstring (the analysis report repeats it). ``save_rows``
is the shared ``experiments.figure_grids`` one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from experiments.analysis_output import unit
from experiments.figure_grids import save_rows

__all__ = ["FRAME_RIGHT", "FRAME_WRONG", "framed", "save_rows", "save_matrix", "save_retrieval"]

FRAME_RIGHT = (0.0, 0.8, 0.0)
FRAME_WRONG = (0.85, 0.85, 0.85)


def save_matrix(persons: Tensor, items: Tensor, tried: Tensor, path: Path) -> Path:
    """Fig. 4.9: the top row the persons, the first column the items, cell (i, p) item i worn by
    person p (``tried``: (I, P, 3, H, W)); the top-left tile blank."""
    blank = torch.ones_like(persons[:1])
    top = torch.cat([blank, unit(persons)])
    rows = [top] + [torch.cat([unit(items[i : i + 1]), unit(tried[i])]) for i in range(len(items))]
    grid = make_grid(torch.cat(rows), nrow=persons.shape[0] + 1, padding=2, pad_value=1.0)
    save_image(grid, path)
    return path


def framed(image: Tensor, colour: tuple[float, float, float], width: int = 2) -> Tensor:
    """(3, H, W) in [0, 1] with a ``width``-pixel frame of ``colour`` drawn over its border."""
    out = image.clone()
    fill = torch.tensor(colour, dtype=out.dtype).view(3, 1, 1)
    out[:, :width], out[:, -width:] = fill, fill
    out[:, :, :width], out[:, :, -width:] = fill, fill
    return out


def save_retrieval(
    queries: Tensor, database: Tensor, order: Tensor, correct: Tensor, path: Path, top: int = 5
) -> Path:
    """Fig. 4.11: per query (row) the query, then its ``top`` database items by rank, the
    correct one framed green (the others light grey)."""
    tiles = []
    for q in range(queries.shape[0]):
        tiles.append(unit(queries[q]))
        for index in order[q, :top].tolist():
            colour = FRAME_RIGHT if index == int(correct[q]) else FRAME_WRONG
            tiles.append(framed(unit(database[index]), colour))
    save_image(make_grid(torch.stack(tiles), nrow=top + 1, padding=2, pad_value=1.0), path)
    return path
