"""``ImageQuality``: SSIM, MS-SSIM and PSNR of every image seen, as sums over processes.

States (float64, ``dist_reduce_fx="sum"``): the sums of the per-image SSIM, MS-SSIM and finite
PSNR values, the number of images, and the number of images equal to their target (PSNR
``+inf``); ``ms_ssim_scales`` keeps the fewest MS-SSIM scales used (``"min"``). Under DDP the
epoch means are those of one process over the same images (up to the order of float64
additions), whatever the share of each process, and ``merge_state`` adds two holders.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from callbacks.image_quality.inputs import as_float64_pair, check_data_range
from callbacks.image_quality.ms_ssim import MS_SSIM_WEIGHTS, ms_ssim_scales, ssim_and_ms_ssim
from callbacks.image_quality.psnr import psnr_of_mse

__all__ = ["ImageQuality"]


class ImageQuality(Metric):
    """Per-image SSIM, MS-SSIM and PSNR, averaged over all images at ``compute``.

    Args:
        data_range: The value range of the images (1.0 for [0, 1], 2.0 for [-1, 1]).

    As input to ``update``: ``preds`` and ``target`` (N, C, H, W) floating-point images, at
    least 11 x 11 px. As output of ``compute``: a dict of float64 scalars ``ssim``, ``ms_ssim``,
    ``psnr`` (``+inf`` when any image equals its target), ``psnr_finite`` (the mean over the
    other images; NaN when there are none), ``identical`` (that count), ``count`` (images) and
    ``ms_ssim_scales`` (the fewest scales any batch used).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, data_range: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_range = check_data_range(data_range)
        zero = torch.tensor(0.0, dtype=torch.float64)
        for name in ("ssim_sum", "ms_ssim_sum", "psnr_sum", "count", "identical"):
            self.add_state(name, default=zero.clone(), dist_reduce_fx="sum")
        most = torch.tensor(float(len(MS_SSIM_WEIGHTS)), dtype=torch.float64)
        self.add_state("ms_ssim_scales", default=most, dist_reduce_fx="min")

    def update(self, preds: Tensor, target: Tensor) -> None:
        x, y = as_float64_pair(preds.detach(), target.detach(), self.data_range)
        height, width = x.shape[-2:]
        scales = ms_ssim_scales(height, width)
        if scales == 0:
            raise ValueError(
                f"SSIM needs images of at least 11 x 11 px (the gaussian window), got "
                f"{height} x {width}"
            )
        structural, multiscale = ssim_and_ms_ssim(x, y, self.data_range, scales)
        mse = (x - y).square().mean(dim=(1, 2, 3))
        identical = mse == 0
        self.ssim_sum += structural.sum()
        self.ms_ssim_sum += multiscale.sum()
        self.psnr_sum += psnr_of_mse(mse[~identical], self.data_range).sum()
        self.count += len(x)
        self.identical += identical.sum()
        self.ms_ssim_scales = self.ms_ssim_scales.clamp_max(scales)

    def compute(self) -> dict[str, Tensor]:
        count, identical = self.count, self.identical
        nan = count.new_tensor(math.nan)
        finite = self.psnr_sum / (count - identical) if count > identical else nan
        return {
            "ssim": self.ssim_sum / count,
            "ms_ssim": self.ms_ssim_sum / count,
            "psnr": torch.where(identical > 0, math.inf, finite),
            "psnr_finite": finite,
            "identical": identical,
            "count": count,
            "ms_ssim_scales": self.ms_ssim_scales,
        }
