"""SSIM per image: gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03, colour by channel.

The definition is Wang et al. (2004) as scikit-image computes it with
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=R, channel_axis=...)``:

    mu_x = G * x,  sigma_x^2 = G * x^2 - mu_x^2,  sigma_xy = G * (x y) - mu_x mu_y
    l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)
    SSIM map = l cs

with C1 = (K1 R)^2, C2 = (K2 R)^2 and population (not sample) covariances, averaged over the
pixels where the whole window lies inside the image, per channel, then over channels. The
contrast-structure map ``cs`` (the second factor alone) is what MS-SSIM uses at its finer
scales. Everything is computed in float64 on the images' device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from callbacks.image_quality.gaussian import gaussian_window, valid_gaussian_filter
from callbacks.image_quality.inputs import as_float64_pair, check_data_range

__all__ = ["K1", "K2", "SIGMA", "WINDOW", "image_chunks", "ssim", "ssim_and_contrast"]

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
#: On a CPU, images are scored in chunks of about this many values, which stay in the caches;
#: on other devices the whole batch at once.
CPU_CHUNK_VALUES = 2**18


def image_chunks(x: Tensor, y: Tensor) -> list[tuple[Tensor, Tensor]]:
    """``(x, y)`` split along the images into chunks scored one after the other."""
    if x.device.type != "cpu":
        return [(x, y)]
    size = max(1, CPU_CHUNK_VALUES // max(1, x[0].numel()))
    return list(zip(x.split(size), y.split(size), strict=True))


def ssim_and_contrast(x: Tensor, y: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term of each image and channel.

    Args:
        x, y: float64 images (N, C, H, W) on one device, H and W at least ``WINDOW``. Other
            floating dtypes are computed in theirs, with autograd (float32 for a loss).
        data_range: The value range R of the images (1.0 for [0, 1]).

    Returns:
        ``(ssim, cs)``, each (N, C) float64: the maps averaged over the valid region.
    """
    data_range = check_data_range(data_range)
    window = gaussian_window(WINDOW, SIGMA, dtype=x.dtype, device=x.device)
    # one batched filtering of the five maps: x, y, x^2, y^2, x y
    mu_x, mu_y, xx, yy, xy = valid_gaussian_filter(torch.stack([x, y, x * x, y * y, x * y]), window)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_xy = mu_x * mu_y
    mu_sq = mu_x * mu_x + mu_y * mu_y
    var_sum = (xx + yy) - mu_sq  # sigma_x^2 + sigma_y^2
    covariance = xy - mu_xy
    cs_map = (2 * covariance + c2) / (var_sum + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_sq + c1) * cs_map
    return ssim_map.mean(dim=(-2, -1)), cs_map.mean(dim=(-2, -1))


def ssim(preds: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM of each image of ``preds`` (N, C, H, W) against ``target``: (N,) float64.

    Equal to scikit-image's ``structural_similarity`` with ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range`` (and ``channel_axis`` for colour) on
    each image. Images must be at least 11 x 11 px (the window must fit once).

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> ssim(x, x).tolist()
        [1.0, 1.0]
    """
    x, y = as_float64_pair(preds, target, data_range)
    per_channel = [ssim_and_contrast(a, b, data_range)[0] for a, b in image_chunks(x, y)]
    return torch.cat(per_channel).mean(dim=1)
