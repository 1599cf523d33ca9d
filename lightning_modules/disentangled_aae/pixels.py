"""The method's images in the callbacks' range and its Table 1 error measure.

The generator's images are in [-1, 1] (tanh); callbacks and panels take [0, 1] (``to_unit``).
Table 1's RMSE is per image, over every pixel and channel, on the 0-255 pixel scale
(``pixel_rmse``); the training log, the analysis and the tests all use this one definition.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["pixel_rmse", "to_unit"]


def to_unit(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> [0, 1], clamped, detached float32 on the same device."""
    return ((images.detach().float() + 1) / 2).clamp(0, 1)


def pixel_rmse(images: Tensor, predictions: Tensor, pixel_scale: float = 255.0) -> Tensor:
    """Per-image RMSE (B,) float64 of [-1, 1] images on a ``pixel_scale`` range (0-255).

    ``predictions`` broadcasts against ``images`` (a single mean image works).
    """
    difference = (images.double() - predictions.double()) * (pixel_scale / 2)
    return difference.square().flatten(1).mean(1).sqrt()
