"""The disentangled AAE's analysis figures that ``callbacks.panels`` has no ready form for.

- ``probe_heatmap``: the probe matrix (spec section 7, suite extra): rows are sub-vectors,
  columns factors, each cell coloured on a common [0, 1] scale and labelled with its number
  (probes of different kinds per column: R^2, verification accuracy, AUC), NaN cells grey "n/a".
- ``framed``: an image inside a coloured frame (Fig. 6 marks a correct expression prediction
  green, a wrong one red).

The image panels (reconstructions, samples, transfer, retrieval) are ``callbacks.panels``'
``image_table`` as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor

from callbacks.panels import figure_to_image, new_figure

__all__ = ["CORRECT", "WRONG", "framed", "probe_heatmap"]

CORRECT = (0.0, 0.7, 0.0)  # Fig. 6's frame of a correct prediction (RGB in [0, 1])
WRONG = (0.85, 0.0, 0.0)


def framed(image: Tensor, colour: Sequence[float], width: int = 2) -> Tensor:
    """``image`` (C, H, W) in [0, 1] inside a frame of ``width`` pixels: (C, H + 2w, W + 2w).

    Args:
        image: The picture, float in [0, 1].
        colour: One value in [0, 1] per channel.
        width: Frame width in pixels (>= 1).
    """
    if image.dim() != 3 or len(colour) != image.shape[0]:
        raise ValueError(
            f"image must be (C, H, W) with one colour value per channel, got "
            f"{tuple(image.shape)} and {len(colour)} values"
        )
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    channels, height, side = image.shape
    fill = torch.tensor(colour, dtype=image.dtype, device=image.device).view(channels, 1, 1)
    out = fill.expand(channels, height + 2 * width, side + 2 * width).clone()
    out[:, width : width + height, width : width + side] = image
    return out


def probe_heatmap(
    values: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str,
    decimals: int = 2,
) -> Image.Image:
    """A rows x columns grid of probe numbers, coloured on [0, 1] and labelled with their values.

    Args:
        values: ``values[i][j]``: the number of row i (a sub-vector) and column j (a factor);
            NaN (or None) for no number. Colours clip to [0, 1] (a negative R^2 is the darkest);
            the labels show the values as they are.
        row_labels: One label per row (e.g. ``f_p``).
        column_labels: One label per column; newlines allowed (e.g. "pose\\nridge R^2").
        title: Figure title.
        decimals: Decimals of the labels.
    """
    grid = np.array(
        [[math.nan if v is None else float(v) for v in row] for row in values], dtype=float
    ).reshape(len(values), -1)
    if grid.shape != (len(row_labels), len(column_labels)):
        raise ValueError(
            f"values are {grid.shape[0]} x {grid.shape[1]}, the labels "
            f"{len(row_labels)} x {len(column_labels)}"
        )
    fig = new_figure(1.9 * len(column_labels) + 1.6, 0.55 * len(row_labels) + 1.6)
    ax = fig.subplots()
    colours = colormaps["viridis"].with_extremes(bad="lightgrey")
    shown = ax.imshow(
        np.ma.masked_invalid(grid.clip(0, 1)), cmap=colours, vmin=0, vmax=1, aspect="auto"
    )
    for (i, j), value in np.ndenumerate(grid):
        dark = math.isfinite(value) and value < 0.6  # white text on viridis' dark end
        label = "n/a" if math.isnan(value) else f"{value:.{decimals}f}"
        ax.text(j, i, label, ha="center", va="center", fontsize=9, color="w" if dark else "k")
    ax.set_xticks(range(len(column_labels)), column_labels, fontsize=7)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=9)
    ax.xaxis.tick_top()
    ax.set_title(title, fontsize=9, pad=28)
    fig.colorbar(shown, ax=ax, fraction=0.05, pad=0.03)
    return figure_to_image(fig)
