"""The colour-histogram retrieval baseline of UST (thesis Table 4.3, spec ``ust`` section 6).

Each image is described by the joint HSV histogram of its masked pixels: 8 hue x 4 saturation
x 4 value bins, 128-d, L1-normalised; the database is ranked by the L1 distance between
histograms (``histogram_l1_distance``). The bin layout is [proposed] in the spec.

RGB -> HSV is the usual hexcone conversion (as ``colorsys.rgb_to_hsv``): V = max, S = (max - min)
/ max (0 where max = 0), H in [0, 1) (0 for greys). Bin edges: bin i of a channel with n bins
covers [i / n, (i + 1) / n). Hue is periodic, so a hue that rounds to 1.0 (``-1e-10 % 1.0`` in
float32) wraps to 0.0 in ``rgb_to_hsv``, hence to bin 0; saturation and value 1.0 are clamped
into the last bin, whose interval is closed [(n - 1) / n, 1] (``numpy.histogramdd``'s
convention). The joint bin of (h, s, v) is
``(h * n_s + s) * n_v + v``: hue major, value minor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_modules.ust.masks import check_mask

__all__ = ["HSV_BINS", "colour_histogram", "histogram_l1_distance", "rgb_to_hsv"]

#: Hue, saturation and value bins of the baseline: 8 x 4 x 4 = 128.
HSV_BINS: tuple[int, int, int] = (8, 4, 4)


def rgb_to_hsv(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, H, W) HSV, each channel in [0, 1], hue < 1."""
    r, g, b = images.unbind(dim=1)
    maxc = images.amax(dim=1)
    delta = maxc - images.amin(dim=1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maxc == r,
        (g - b) / safe,
        torch.where(maxc == g, 2 + (b - r) / safe, 4 + (r - g) / safe),
    )
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    hue = torch.where(hue < 1, hue, torch.zeros_like(hue))  # -tiny % 1.0 can round to 1.0
    saturation = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, 1), 0)
    return torch.stack([hue, saturation, maxc], dim=1)


def _bin(channel: Tensor, n: int) -> Tensor:
    """Bin indices of values in [0, 1], the value 1.0 clamped into the last bin."""
    return (channel * n).floor().long().clamp(0, n - 1)


def colour_histogram(images: Tensor, mask: Tensor, bins: tuple[int, int, int] = HSV_BINS) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] and (B, 1, H, W) 0/1 masks -> (B, prod(bins)) histograms.

    The joint HSV histogram of the pixels with mask > 0.5, each row summing to 1.

    Raises:
        ValueError: bad shapes, values outside [0, 1], or an empty mask (naming its index).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    check_mask(mask, images)
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"images must be in [0, 1], got [{images.min().item()}, {images.max().item()}]"
        )
    inside = (mask[:, 0] > 0.5).flatten(1)
    empty = ~inside.any(dim=1)
    if empty.any():
        which = empty.nonzero().flatten().tolist()
        raise ValueError(f"empty mask for image(s) {which}: no pixels to count")
    hue, sat, val = rgb_to_hsv(images).unbind(dim=1)
    n_h, n_s, n_v = bins
    joint = (_bin(hue, n_h) * n_s + _bin(sat, n_s)) * n_v + _bin(val, n_v)
    counts = torch.zeros(images.shape[0], n_h * n_s * n_v, dtype=images.dtype)
    counts = counts.to(images.device).scatter_add_(1, joint.flatten(1), inside.to(images.dtype))
    return counts / counts.sum(dim=1, keepdim=True)


def histogram_l1_distance(queries: Tensor, database: Tensor) -> Tensor:
    """(Q, D) and (N, D) histograms -> (Q, N) L1 distances, for ranking the baseline."""
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries {tuple(queries.shape)} and database {tuple(database.shape)} must be "
            "(Q, D) and (N, D) with the same D"
        )
    return torch.cdist(queries.double(), database.double(), p=1)
