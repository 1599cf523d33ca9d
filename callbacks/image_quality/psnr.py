"""PSNR per image: ``10 log10(R^2 / MSE)`` with each image's own mean squared error.

As scikit-image's ``peak_signal_noise_ratio(image_true, image_test, data_range=R)`` on each
image (all channels and pixels of one image in its MSE), in float64. An image equal to its
target has MSE 0 and PSNR ``+inf``, as scikit-image gives; averaging per-image values is not
the PSNR of the MSE pooled over a set, which weights images differently.
"""

from __future__ import annotations

import torch
from torch import Tensor

from callbacks.image_quality.inputs import as_float64_pair

__all__ = ["psnr", "psnr_of_mse"]


def psnr_of_mse(mse: Tensor, data_range: float) -> Tensor:
    """``10 log10(data_range^2 / mse)`` elementwise; ``+inf`` where ``mse`` is 0."""
    return 10 * torch.log10(data_range**2 / mse)


def psnr(preds: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB of each image of ``preds`` (N, C, H, W) against ``target``: (N,) float64."""
    x, y = as_float64_pair(preds, target, data_range)
    return psnr_of_mse((x - y).square().mean(dim=(1, 2, 3)), float(data_range))
