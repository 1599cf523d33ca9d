"""OLR's analysis figures as PIL images, drawn with ``callbacks.panels``.

- ``norm_correlation_heatmap``: the L x L Pearson heatmap of label-embedding norms with annotated
  values and label names (Fig. 4); undefined (NaN) cells grey, marked "n/a";
- ``pca_strip``: images ordered along one label's PC1, each with its projection on top (Fig. 5);
- ``editing_panel``: one row per edit, original | reconstruction | edited reconstruction(s) | the
  edit as text (Figs. 7-8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor

from callbacks.panels import figure_to_image, new_figure, tensor_to_image

__all__ = ["editing_panel", "norm_correlation_heatmap", "pca_strip"]


def norm_correlation_heatmap(
    r: Tensor,
    names: Sequence[str],
    title: str = "Pearson r between label-embedding norms",
    decimals: int = 1,
) -> Image.Image:
    """Heatmap of an (L, L) correlation matrix in [-1, 1], each cell annotated with its value.

    Args:
        r: (L, L) Pearson r (``norm_correlation(...).r``); NaN cells are grey and read "n/a".
        names: The L label names, on both axes.
        title: Figure title.
        decimals: Decimals of the annotated values.
    """
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] != len(names):
        raise ValueError(f"r must be (L, L) with L = {len(names)} names, got {tuple(r.shape)}")
    values = r.detach().double().cpu().numpy()
    size = len(names)
    side = max(4.0, 0.42 * size + 2.5)  # 38 labels: cells wide enough for "-0.3" at 5 pt
    fig = new_figure(side + 1.0, side)
    ax = fig.subplots()
    cmap = colormaps["coolwarm"].with_extremes(bad="lightgrey")
    heat = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest"
    )
    fontsize = 7 if size <= 12 else 5
    for i in range(size):
        for j in range(size):
            value = values[i, j]
            text = "n/a" if math.isnan(value) else f"{value:.{decimals}f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize)
    ax.set_xticks(range(size))
    ax.set_yticks(range(size))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_yticklabels(names, fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.02)
    return figure_to_image(fig)


def _pil(images: Tensor | Sequence[Tensor | Image.Image]) -> list[Image.Image]:
    return [im if isinstance(im, Image.Image) else tensor_to_image(im) for im in images]


def pca_strip(
    images: Tensor | Sequence[Tensor | Image.Image],
    projections: Tensor | Sequence[float],
    ncols: int = 5,
    title: str | None = None,
) -> Image.Image:
    """Images in rows of ``ncols``, each titled with its PC1 projection (Fig. 5).

    Args:
        images: (M, C, H, W) in [0, 1] or M PIL images / (C, H, W) tensors, in strip order.
        projections: M projection values, written above their images.
        ncols: Images per row (the paper: 5, two rows).
        title: Optional figure title (e.g. the label and its PC1/PC2 ratios).
    """
    pil = _pil(images)
    values = torch.as_tensor(projections, dtype=torch.float64).flatten().tolist()
    if not pil or len(pil) != len(values):
        raise ValueError(f"got {len(pil)} images but {len(values)} projections (need >= 1)")
    nrows = math.ceil(len(pil) / ncols)
    fig = new_figure(1.8 * ncols, 2.0 * nrows + (0.3 if title else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, value in zip(axes.flat, pil, values, strict=False):
        ax.imshow(image)
        ax.set_title(f"{value:+.3g}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return figure_to_image(fig)


def editing_panel(
    originals: Tensor | Sequence[Tensor | Image.Image],
    reconstructions: Tensor | Sequence[Tensor | Image.Image],
    edited: Sequence[Tensor | Sequence[Tensor | Image.Image]],
    notes: Sequence[str],
    edited_titles: Sequence[str] = ("edited",),
    title: str | None = None,
) -> Image.Image:
    """Before/after editing: per row original | reconstruction | edited ... | note (Figs. 7-8).

    Args:
        originals: N original images ((N, C, H, W) in [0, 1], or a sequence).
        reconstructions: N reconstructions of the unedited embeddings.
        edited: One entry per edited column, each N images (Fig. 7: one column; Fig. 8: s = 1
            and s = 1.5).
        notes: N texts written in the last column, e.g. "+Chubby" or "-Eyeglasses".
        edited_titles: One column title per entry of ``edited``.
        title: Optional figure title.
    """
    if len(edited) != len(edited_titles):
        raise ValueError(f"got {len(edited)} edited columns but {len(edited_titles)} titles")
    columns = [_pil(originals), _pil(reconstructions), *(_pil(c) for c in edited)]
    if not notes or any(len(c) != len(notes) for c in columns):
        raise ValueError(
            f"every column needs one image per note ({len(notes)} notes), got "
            f"{[len(c) for c in columns]}"
        )
    titles = ["original", "reconstruction", *edited_titles, "edit"]
    cell = 1.6
    fig = new_figure(cell * len(titles), cell * len(notes) + (0.3 if title else 0.0))
    axes = fig.subplots(len(notes), len(titles), squeeze=False)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    for i, note in enumerate(notes):
        for j, column in enumerate(columns):
            axes[i, j].imshow(column[i])
            axes[i, j].axis("off")
        axes[i, -1].axis("off")
        axes[i, -1].text(0.5, 0.5, note, ha="center", va="center", fontsize=9, wrap=True)
    for j, text in enumerate(titles):
        axes[0, j].set_title(text, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return figure_to_image(fig)
