"""Training curves of the OLR stages from their ``metrics.csv`` (the spec's figure 8).

A run's ``metrics.csv`` (``experiments.loggers``) has one column per logged key and one row per
logging step; a key's epoch values are the rows where its column is filled. The figure has one
panel per stage: the Siamese pair loss L_S, the decoder loss L_R split into its SSIM and MSE
parts, and the probe's label accuracy, train and validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image

from callbacks.panels import figure_to_image, new_figure

__all__ = ["CURVES", "training_curves"]

CURVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "siamese": ("Siamese pair loss L_S", ("train/loss_epoch", "val/loss")),
    "decoder": (
        "Decoder loss L_R: SSIM and MSE parts",
        ("train/loss_ssim_epoch", "train/loss_mse_epoch", "val/loss_ssim", "val/loss_mse"),
    ),
    "probe": ("Linear probe label accuracy", ("train/accuracy_epoch", "val/accuracy")),
}
"""Per stage: panel title and the ``metrics.csv`` keys drawn in it."""


def training_curves(
    panels: Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[float]]]],
) -> Image.Image:
    """One panel per title, one line per series ``label -> (epochs, values)``."""
    if not panels:
        raise ValueError("training_curves needs at least one panel")
    fig = new_figure(4.2 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, series) in zip(axes, panels.items(), strict=True):
        drawn = [(label, e, v) for label, (e, v) in series.items() if v]
        for label, epochs, values in drawn:
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return figure_to_image(fig)
