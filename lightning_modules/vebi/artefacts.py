"""The suite's grid-artefact score of a heatmap (spec section 6, Visual quality; not in the paper).

A backward pass through a layer of stride S scatters the signal onto a grid of period S, which
puts power at the frequencies that are multiples of 1/S. The score is the fraction of a map's
2-D FFT power (|FFT|^2, no window) that lies on those bins, with the DC bin left out of both the
numerator and the denominator (it holds only the map's mean).

Which bins count, for an H x W map and stride S: the rows u in {round(k H / S) mod H : k = 0..S-1}
crossed with the columns v in {round(k W / S) mod W : k = 0..S-1}, minus (0, 0). These are exactly
the bins on which any pattern of period S along both axes has all its power when S divides H and
W (rounded to the nearest bin otherwise); they include the axis lines (u = 0 or v = 0, artefacts
along one axis only) and the mixed bins (a checkerboard's (H/2, W/2) for S = 2). A divisor of S is
covered too, so S is the total stride below the layer (``ModuleWalk.jump``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def stride_bins(size: int, stride: int) -> Tensor:
    """FFT bin indices round(k size / stride) mod size, k = 0..stride-1 (0 is the DC bin)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    k = torch.arange(stride, dtype=torch.float64)
    return torch.round(k * size / stride).long() % size


def stride_lattice(height: int, width: int, stride: int) -> Tensor:
    """(H, W) bool mask of the bins that count (see the module docstring), DC excluded."""
    lattice = torch.zeros(height, width, dtype=torch.bool)
    lattice[stride_bins(height, stride)[:, None], stride_bins(width, stride)[None, :]] = True
    lattice[0, 0] = False
    return lattice


def artefact_score(maps: Tensor, stride: int) -> Tensor:
    """Fraction of non-DC FFT power of each (..., H, W) map on the stride-S bins, in [0, 1].

    A map whose non-DC power is below 1e-12 of its total (a constant or all-zero map, up to
    rounding) scores 0.
    """
    power = torch.fft.fft2(maps.double()).abs().square()
    lattice = stride_lattice(*maps.shape[-2:], stride).to(maps.device)
    total = power.sum((-2, -1))
    non_dc = total - power[..., 0, 0]
    score = power[..., lattice].sum(-1) / non_dc.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(non_dc > 1e-12 * total, score, torch.zeros_like(score)).to(maps.dtype)
