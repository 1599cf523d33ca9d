"""The one plotting helper: figures, image grids and charts, logged to every logger that can.

Every figure starts in ``new_figure`` (a matplotlib ``Figure``, no pyplot state) and ends in
``figure_to_image``; ``log_images`` sends images to each logger that takes them (duck-typed: a
logger with ``log_image``, as W&B, gets them with captions; one whose ``experiment`` has
``add_image``, as TensorBoard, one by one) and writes the first as a PNG in the run folder, so a
CSV-only run keeps it too.

- ``attribute_bar_chart``: one bar per attribute or class; NaN values are grey hatched
  "undefined" bars.
- ``captioned_grid``: a grid of images, each with a caption underneath;
- ``image_table``: images in rows and titled columns (e.g. input | output | target per item).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning import Trainer
from matplotlib.figure import Figure
from PIL import Image

__all__ = [
    "attribute_bar_chart",
    "captioned_grid",
    "figure_to_image",
    "image_normalization",
    "image_table",
    "local_log_dir",
    "log_images",
    "new_figure",
    "tensor_to_image",
]


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure of ``width`` x ``height`` inches, outside pyplot's global state.

    Every plot of the suite starts here and ends in ``figure_to_image``: no figure is left open
    and nothing depends on the backend.
    """
    return Figure(figsize=(width, height))


def figure_to_image(fig: Figure) -> Image.Image:
    """Render a matplotlib figure to a PIL RGB image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def tensor_to_image(image: torch.Tensor) -> Image.Image:
    """(C, H, W) float in [0, 1] -> PIL RGB image."""
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().cpu()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def log_images(
    trainer: Trainer,
    key: str,
    images: Sequence[Image.Image | torch.Tensor],
    captions: Sequence[str] | None = None,
) -> Path | None:
    """Log ``images`` under ``key`` to every capable logger; save the first as PNG in the log dir.

    Returns the path of the PNG written (``<log_dir>/media/<key>_step<N>.png``), or None when the
    trainer has no logger. Safe to call from rank zero alone.
    """
    pil = [tensor_to_image(im) if isinstance(im, torch.Tensor) else im for im in images]
    step = trainer.global_step
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            kwargs = {"caption": list(captions)} if captions is not None else {}
            logger.log_image(key=key, images=pil, step=step, **kwargs)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):
            for i, im in enumerate(pil):
                array = np.asarray(im).transpose(2, 0, 1)
                logger.experiment.add_image(f"{key}/{i}", array, global_step=step)
    log_dir = local_log_dir(trainer)
    if log_dir is None or not pil:
        return None
    out = Path(log_dir) / "media" / f"{key.replace('/', '_')}_step{step}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    pil[0].save(out)
    return out


def image_normalization(
    trainer: Trainer, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(C, 1, 1) mean and std the images were normalized with, to undo it for drawing.

    The given ``mean`` and ``std``, else ``trainer.datamodule.image_mean`` / ``image_std``;
    None when neither is known (the caller decides whether that is an error).
    """
    if mean is None or std is None:
        datamodule = getattr(trainer, "datamodule", None)
        mean = getattr(datamodule, "image_mean", None)
        std = getattr(datamodule, "image_std", None)
    if mean is None or std is None:
        return None
    return tuple(torch.as_tensor(v, dtype=torch.float32)[:, None, None] for v in (mean, std))


def local_log_dir(trainer: Trainer) -> Path | None:
    """The first logger's folder, read without a collective call.

    ``trainer.log_dir`` broadcasts from rank zero, so it hangs when only rank zero asks (as
    rank-zero-only callbacks do). With no logger there is no folder: nothing is written to the cwd.
    """
    if not trainer.loggers:
        return None
    logger = trainer.loggers[0]
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return Path(folder) if folder is not None else None


def attribute_bar_chart(
    names: Sequence[str],
    values: Sequence[float],
    title: str,
    mean_line: float | None = None,
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
) -> Image.Image:
    """Bar chart with one bar per attribute, readable for 40 attributes (labels rotated 90 degrees).

    Args:
        names: Attribute names, in the order the bars are drawn.
        values: One value per name; NaN marks an undefined value, drawn as a grey hatched bar
            reaching the top of the plot and labelled "undefined".
        title: Figure title.
        mean_line: If given, a dashed horizontal line at this value, labelled with it.
        ylabel: Label of the y axis.
        ylim: Fixed y range (e.g. ``(0, 1)`` for AUROC); default: from 0 to 1.1 x the largest value.

    Returns:
        The rendered figure as a PIL RGB image.
    """
    if len(names) != len(values):
        raise ValueError(f"got {len(names)} names but {len(values)} values")
    values = [float(v) for v in values]
    ylim = ylim or _default_ylim(values)
    fig = new_figure(max(6.0, 0.28 * len(names) + 2.0), 4.5)
    ax = fig.subplots()
    for i, v in enumerate(values):
        if math.isfinite(v):
            ax.bar(i, v, color="tab:blue", width=0.8)
        else:
            _undefined_bar(ax, i, ylim)
    if mean_line is not None and math.isfinite(mean_line):
        label = f"mean = {mean_line:.4f}"
        ax.axhline(mean_line, color="tab:red", linestyle="--", linewidth=1.2, label=label)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return figure_to_image(fig)


def _default_ylim(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    top = max(finite) * 1.1 if finite and max(finite) > 0 else 1.0
    return min(0.0, min(finite, default=0.0)), top


def _undefined_bar(ax, x: int, ylim: tuple[float, float]) -> None:
    """Grey hatched bar over the whole y range at ``x``, labelled "undefined"."""
    low, high = ylim
    ax.bar(x, high - low, bottom=low, color="lightgrey", hatch="//", edgecolor="grey", width=0.8)
    ax.text(x, (low + high) / 2, "undefined", rotation=90, ha="center", va="center", fontsize=7)


def captioned_grid(
    images: torch.Tensor | Sequence[Image.Image | torch.Tensor],
    captions: Sequence[str],
    ncols: int | None = None,
    title: str | None = None,
) -> Image.Image:
    """Grid of images with a (multi-line) caption under each one.

    Args:
        images: (N, C, H, W) float tensor in [0, 1], or a sequence of PIL images or
            (C, H, W) tensors.
        captions: One caption per image; newlines start new caption lines.
        ncols: Columns of the grid; default ceil(sqrt(N)).
        title: Optional figure title.

    Returns:
        The rendered figure as a PIL RGB image.
    """
    pil = [tensor_to_image(im) if isinstance(im, torch.Tensor) else im for im in images]
    if len(pil) != len(captions):
        raise ValueError(f"got {len(pil)} images but {len(captions)} captions")
    if not pil:
        raise ValueError("captioned_grid needs at least one image")
    ncols = ncols or math.ceil(math.sqrt(len(pil)))
    nrows = math.ceil(len(pil) / ncols)
    wrapped = [_wrap(caption) for caption in captions]
    lines = max(text.count("\n") + 1 for text in wrapped)
    image_h, caption_h = 2.4, 0.12 * lines + 0.1  # inches
    fig = new_figure(2.6 * ncols, (image_h + caption_h) * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(hspace=caption_h / image_h, wspace=0.08)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, text in zip(axes.flat, pil, wrapped, strict=False):
        ax.imshow(image)
        ax.text(0.0, -0.02, text, transform=ax.transAxes, ha="left", va="top", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return figure_to_image(fig)


def _wrap(caption: str, width: int = 44) -> str:
    """Wrap each caption line to about the image width (44 characters at 6 pt in 2.6 inches)."""
    lines = caption.split("\n")
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)


def resolve_attribute_names(
    trainer: Trainer, names: Sequence[str] | None, num_attributes: int
) -> list[str]:
    """Names given explicitly, else ``trainer.datamodule.attribute_names``, else ``attr_0..``.

    Raises:
        ValueError: The names found do not number ``num_attributes``.
    """
    source = "attribute_names"
    if names is None:
        names = getattr(getattr(trainer, "datamodule", None), "attribute_names", None)
        source = "trainer.datamodule.attribute_names"
    if names is None:
        return [f"attr_{i}" for i in range(num_attributes)]
    if len(names) != num_attributes:
        raise ValueError(
            f"{source} has {len(names)} names but the logits have {num_attributes} columns"
        )
    return list(names)


def image_table(
    rows: Sequence[Sequence[torch.Tensor]],
    column_titles: Sequence[str],
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
    captions: Sequence[Sequence[str]] | None = None,
) -> Image.Image:
    """A table of images: ``rows[i][j]`` (C, H, W) in [0, 1] under ``column_titles[j]``.

    Every row has one image per column; ``row_titles`` (one per row) are written at the left,
    ``captions[i][j]`` (optional, one per image, "" for none) under each image.
    Cells are as large as the largest image up to 2.56 inches (its pixels at 100 dpi).
    """
    if not rows:
        raise ValueError("image_table needs at least one row")
    if any(len(row) != len(column_titles) for row in rows):
        raise ValueError(f"every row needs {len(column_titles)} images, one per column")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"got {len(rows)} rows but {len(row_titles)} row titles")
    if captions is not None and [len(c) for c in captions] != [len(row) for row in rows]:
        raise ValueError("captions must hold one caption per image, row by row")
    side = max(max(image.shape[-2:]) for row in rows for image in row) / 100
    cell = min(max(side, 1.2), 2.56)
    fig = new_figure(cell * len(column_titles) + 0.4, cell * len(rows) + 0.4)
    axes = fig.subplots(len(rows), len(column_titles), squeeze=False)
    fig.subplots_adjust(wspace=0.04, hspace=0.3 if captions is not None else 0.04)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            ax = axes[i, j]
            ax.imshow(tensor_to_image(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column_titles[j], fontsize=8)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i], fontsize=7)
            if captions is not None and captions[i][j]:
                ax.set_xlabel(captions[i][j], fontsize=6, labelpad=2)
    if title:  # above the column titles (of up to several lines), not over them
        lines = max(t.count("\n") + 1 for t in column_titles)
        above = (0.14 * lines + 0.1) / fig.get_figheight()
        fig.suptitle(title, fontsize=9, y=fig.subplotpars.top + above, va="bottom")
    return figure_to_image(fig)
