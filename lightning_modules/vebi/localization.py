"""How well a heatmap covers the true discriminative part (thesis Tab. 3.1; spec section 6 and 9).

- :func:`auc_iou`: for the thresholds t_i = i/100, i = 0..99, IoU(t) = |{H > t} and M| /
  |{H > t} or M| against the ground-truth mask M, averaged over images; AUC-IoU is the mean over
  t times 100 (spec decision 4: the same protocol for every method). Maps are max-normalised
  [0, 1] (H, W) or (B, H, W); the per-image curve is returned too.
- :func:`mass_inside`: the fraction of a map's total mass inside a mask (the double-12c check:
  more mass on the true part than on the other candidate part).
- The reference maps the localization assertions compare against: :func:`random_heatmaps`
  (uniform noise, seeded) and :func:`centred_gaussian` (an isotropic Gaussian at the image
  centre, a prior that ignores the image).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "THRESHOLDS",
    "auc_iou",
    "centred_gaussian",
    "iou_curve",
    "mass_inside",
    "random_heatmaps",
]

#: The spec's thresholds t_i = i / 100, i = 0..99.
THRESHOLDS = torch.arange(100, dtype=torch.float64) / 100


def _batched(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    maps = maps[None] if maps.dim() == 2 else maps
    masks = masks[None] if masks.dim() == 2 else masks
    masks = masks.flatten(0, -3) if masks.dim() == 4 else masks  # (B, 1, H, W) masks
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ")
    return maps.double(), masks.bool()


def iou_curve(maps: Tensor, masks: Tensor, thresholds: Tensor = THRESHOLDS) -> Tensor:
    """IoU({H > t}, M) per image and threshold, (B, T); an empty union counts as IoU 1."""
    maps, masks = _batched(maps, masks)
    above = maps.flatten(1)[:, None, :] > thresholds.to(maps.device)[None, :, None]
    truth = masks.flatten(1)[:, None, :]
    inter = (above & truth).sum(-1).double()
    union = (above | truth).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def auc_iou(maps: Tensor, masks: Tensor) -> tuple[float, Tensor]:
    """(AUC-IoU x 100 over the images, each image's AUC-IoU x 100 (B,))."""
    per_image = 100 * iou_curve(maps, masks).mean(1)
    return float(per_image.mean()), per_image


def mass_inside(maps: Tensor, masks: Tensor) -> Tensor:
    """Fraction of each map's mass inside its mask, (B,); 0 for an all-zero map."""
    maps, masks = _batched(maps, masks)
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.zeros_like(total))


def random_heatmaps(count: int, height: int, width: int, seed: int = 0) -> Tensor:
    """Uniform [0, 1] noise maps (count, H, W), seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, height, width, generator=generator)


def centred_gaussian(height: int, width: int, sigma: float = 0.25) -> Tensor:
    """exp(-d^2 / (2 (sigma min(H, W))^2)) around the image centre, (H, W), max 1."""
    rows = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    cols = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    distance = rows[:, None] ** 2 + cols[None, :] ** 2
    return torch.exp(-distance / (2 * (sigma * min(height, width)) ** 2)).float()
