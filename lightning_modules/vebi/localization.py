"""How well a heatmap covers the true discriminative part (thesis Tab. 3.1; spec section 6 and 9).

- :func:`auc_iou`: for the thresholds t_i = i/100, i = 0..99, IoU(t) = |{H > t} and M| /
  |{H > t} or M| against the ground-truth mask M, averaged over images; AUC-IoU is the mean over
  t times 100 (spec decision 4: the same protocol for every method). Maps are max-normalised
  [0, 1] (H, W) or (B, H, W); the per-image curve is returned too.
- :func:`mass_inside`: the fraction of a map's total mass inside a mask.
- The double-12c checks (spec section 9 b), on the fractions of mass in each candidate part
  (:func:`part_masses`): :func:`part_mass_wins`, the true part holds more mass than every other
  candidate part; :func:`part_switch_moves`, explaining the class of part a instead of the
  same-hue class of part b moves mass towards a: part a's lead over part b (mass on a minus mass
  on b) is larger in the map of a's class than in the map of b's. An all-zero map holds no mass,
  so it wins nothing and moves nothing.
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
    "part_mass_wins",
    "part_masses",
    "part_switch_moves",
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


def part_masses(maps: Tensor, part_masks: Tensor) -> Tensor:
    """Fraction of each map's mass in each part, (B, P), from maps (B, H, W) and the parts'
    masks (B, P, H, W)."""
    parts = part_masks.shape[1]
    repeated = maps[:, None].expand(-1, parts, -1, -1).flatten(0, 1)
    return mass_inside(repeated, part_masks.flatten(0, 1)).view(-1, parts)


def part_mass_wins(masses: Tensor, true_part: Tensor) -> Tensor:
    """bool (B,): the true part (index into P, (B,)) holds strictly more of the map's mass than
    each other part; ``masses`` (B, P) as :func:`part_masses` gives them."""
    own = masses.gather(1, true_part[:, None])
    others = masses.scatter(1, true_part[:, None], float("-inf"))
    return (own > others).all(1)


def part_switch_moves(masses: Tensor) -> Tensor:
    """bool (B,): for every two parts a != b, explaining a's class instead of b's raises a's lead
    over b. ``masses`` (B, P, P): [i, e, p] the mass fraction on part p of image i's map that
    explains the class of part e (all of one hue); each map must hold mass. The condition
    (M[a, a] - M[a, b]) > (M[b, a] - M[b, b]) is M[a, a] + M[b, b] > M[a, b] + M[b, a]: the two
    maps hold more mass on their own parts than on each other's."""
    own = masses.diagonal(dim1=1, dim2=2)  # (B, P)
    moved = own[:, :, None] + own[:, None, :] > masses + masses.transpose(1, 2)
    moved |= torch.eye(masses.shape[1], dtype=torch.bool, device=masses.device)
    has_mass = masses.sum(2) > 0  # (B, P): the map of each part's class
    return moved.flatten(1).all(1) & has_mass.all(1)


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
