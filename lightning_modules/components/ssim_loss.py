"""SSIM as a training loss: the suite's SSIM metric, differentiable, in float32.

``ssim_float32`` computes the maps of ``callbacks.image_quality.ssim`` (gaussian window 11, sigma
1.5, K1 = 0.01, K2 = 0.03, per channel over the valid region, then averaged over channels) in
float32 with autograd, outside autocast (bf16 statistics of squares lose the variances). Losses
are ``1 - SSIM``: OLR's decoder loss (its eq. 3) and the disentangled AAE's optional structural
reconstruction term.
"""

from __future__ import annotations

import torch
from torch import Tensor

from callbacks.image_quality.ssim import ssim_and_contrast

__all__ = ["ssim_float32"]


def ssim_float32(preds: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Differentiable SSIM (N,) of images (N, C, H, W), computed in float32 outside autocast.

    The same maps as the float64 metric ``callbacks.image_quality.ssim.ssim``: per channel,
    averaged over the valid region, then over the channels. Sides must be at least 11 px.
    """
    with torch.autocast(device_type=preds.device.type, enabled=False):
        per_channel, _ = ssim_and_contrast(preds.float(), target.float(), data_range)
    return per_channel.mean(dim=1)
