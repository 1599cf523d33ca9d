"""MS-SSIM per image (Wang, Simoncelli and Bovik, 2003), with fewer scales on small images.

At scale 1 (full size) to M - 1, the contrast-structure term ``cs`` of SSIM; at scale M, the
full SSIM; between scales, a 2 x 2 mean (an odd side keeps its last row or column, so scale k
has ``ceil(side / 2^(k-1))`` pixels). Per channel:

    MS-SSIM = prod_k max(cs_k, 0)^w_k  (k < M)  *  max(SSIM_M, 0)^w_M

then averaged over channels. The window, sigma, K1 and K2 are SSIM's (``callbacks.image_quality
.ssim``); the weights are the standard five (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Negative
terms are clipped to 0 before the fractional powers, as pytorch-msssim does, so the value is
never NaN. On images whose sides are even at every scale this is pytorch-msssim's ``ms_ssim``
with the same ``data_range``; it differs on odd sides, where pytorch-msssim zero-pads.

Small images: the coarsest scale must still hold the 11-px window, which takes sides of at
least 161 px for five scales. Smaller images get the most scales that fit (``ms_ssim_scales``:
3 at 64 px, 4 at 128 px) with the first M weights renormalized to sum to 1; the functions say
so in a warning when they choose that themselves. Below 11 px no scale fits and they refuse.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from callbacks.image_quality.inputs import as_float64_pair
from callbacks.image_quality.ssim import WINDOW, image_chunks, ssim_and_contrast

__all__ = [
    "MS_SSIM_WEIGHTS",
    "ms_ssim",
    "ms_ssim_scales",
    "ms_ssim_weights",
    "scales_note",
    "ssim_and_ms_ssim",
]

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_scales(height: int, width: int) -> int:
    """The number of scales, at most five, whose coarsest one still fits the 11-px window.

    0 when the images are smaller than the window.
    """
    side = min(height, width)
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= WINDOW:
        scales += 1
        side = -(-side // 2)
    return scales


def ms_ssim_weights(scales: int) -> tuple[float, ...]:
    """The first ``scales`` standard weights, renormalized to sum to 1.

    Five scales take the five standard weights as published (they sum to 1.0001).
    """
    if not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise ValueError(f"MS-SSIM has 1 to {len(MS_SSIM_WEIGHTS)} scales, got {scales}")
    if scales == len(MS_SSIM_WEIGHTS):
        return MS_SSIM_WEIGHTS
    total = sum(MS_SSIM_WEIGHTS[:scales])
    return tuple(w / total for w in MS_SSIM_WEIGHTS[:scales])


def scales_note(height: int, width: int) -> str:
    """The one-line warning for images too small for five scales."""
    scales = ms_ssim_scales(height, width)
    weights = ", ".join(f"{w:.4f}" for w in ms_ssim_weights(scales))
    return (
        f"MS-SSIM on {height} x {width} px images uses {scales} of 5 scales (the 11-px window "
        f"needs sides >= 161 px for 5), weights renormalized to ({weights})"
    )


def _halve(x: Tensor) -> Tensor:
    """2 x 2 mean of (N, C, H, W); an odd side repeats its last row/column first."""
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        x = torch.nn.functional.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
    return torch.nn.functional.avg_pool2d(x, kernel_size=2)


def ssim_and_ms_ssim(x: Tensor, y: Tensor, data_range: float, scales: int) -> tuple[Tensor, Tensor]:
    """SSIM and ``scales``-scale MS-SSIM of each image, sharing the full-size statistics.

    Args:
        x, y: float64 images (N, C, H, W) (``inputs.as_float64_pair``), large enough for
            ``scales`` (``ms_ssim_scales``).

    Returns:
        ``(ssim, ms_ssim)``, each (N,) float64, averaged over channels.
    """
    weights = ms_ssim_weights(scales)
    chunks = [_multiscale(a, b, data_range, weights) for a, b in image_chunks(x, y)]
    return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])


def _multiscale(
    x: Tensor, y: Tensor, data_range: float, weights: tuple[float, ...]
) -> tuple[Tensor, Tensor]:
    """``ssim_and_ms_ssim`` of one chunk of images."""
    value = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)  # (N, C)
    full_size = None
    for scale, weight in enumerate(weights):
        structural, contrast = ssim_and_contrast(x, y, data_range)
        full_size = structural if full_size is None else full_size
        last = scale == len(weights) - 1
        value = value * (structural if last else contrast).clamp_min(0) ** weight
        if not last:
            x, y = _halve(x), _halve(y)
    return full_size.mean(dim=1), value.mean(dim=1)


def ms_ssim(
    preds: Tensor, target: Tensor, data_range: float = 1.0, scales: int | None = None
) -> Tensor:
    """MS-SSIM of each image of ``preds`` (N, C, H, W) against ``target``: (N,) float64.

    Args:
        preds, target: Images (N, C, H, W), at least 11 x 11 px.
        data_range: The value range of the images (1.0 for [0, 1]); never guessed.
        scales: Number of scales; ``None`` takes ``ms_ssim_scales(H, W)`` and warns when that is
            fewer than five. More scales than fit raise a ``ValueError``.
    """
    x, y = as_float64_pair(preds, target, data_range)
    height, width = x.shape[-2:]
    fit = ms_ssim_scales(height, width)
    if fit == 0:
        raise ValueError(f"MS-SSIM needs images of at least 11 x 11 px, got {height} x {width}")
    if scales is None:
        scales = fit
        if fit < len(MS_SSIM_WEIGHTS):
            warnings.warn(scales_note(height, width), UserWarning, stacklevel=2)
    elif scales > fit:
        raise ValueError(
            f"MS-SSIM with {scales} scales needs larger images than {height} x {width} px "
            f"(at most {fit} fit)"
        )
    return ssim_and_ms_ssim(x, y, data_range, scales)[1]
