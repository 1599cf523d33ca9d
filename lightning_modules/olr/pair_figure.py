"""OLR's Fig. 2: one occluded pair and, per label, the numbers the Siamese loss compares.

Top: the two occluded images. Below: grouped bars per label of the teacher's probabilities on
each image (p_a, p_b), the target t = p_a p_b and the Siamese prediction u = <e_a, e_b>.
Drawn with ``callbacks.panels`` (a figure outside pyplot, returned as a PIL image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from callbacks.panels import figure_to_image, new_figure, tensor_to_image

__all__ = ["pair_figure"]


def pair_figure(
    image_a: Tensor,
    image_b: Tensor,
    series: Mapping[str, Sequence[float] | Tensor],
    names: Sequence[str],
    title: str | None = None,
) -> Image.Image:
    """Two images over a grouped bar chart with one group per label (Fig. 2).

    Args:
        image_a: (C, H, W) in [0, 1], the first occluded image.
        image_b: (C, H, W) in [0, 1], the second occluded image.
        series: Legend name -> L values (e.g. ``{"p_a": ..., "p_b": ..., "t": ..., "u": ...}``).
        names: The L label names, on the x axis.
        title: Optional figure title.
    """
    if not series:
        raise ValueError("pair_figure needs at least one series of values")
    values = {key: np.asarray([float(v) for v in vals]) for key, vals in series.items()}
    bad = {key: len(v) for key, v in values.items() if len(v) != len(names)}
    if bad:
        raise ValueError(f"every series needs one value per label ({len(names)}), got {bad}")
    width = max(8.0, 0.3 * len(names) + 2.0)
    fig = new_figure(width, 7.0)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.0, 1.6), hspace=0.35)
    for column, (image, label) in enumerate(((image_a, "image a"), (image_b, "image b"))):
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(tensor_to_image(image))
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    x = np.arange(len(names))
    step = 0.8 / len(values)
    for i, (key, vals) in enumerate(values.items()):
        ax.bar(x - 0.4 + step * (i + 0.5), vals, width=step, label=key)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.legend(fontsize=8, ncols=len(values))
    ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    return figure_to_image(fig)
