"""The box-occlusion study of VEBI's visual quality (spec section 6 and decision 9).

A heatmap H ranks the pixels an explanation finds relevant; occluding them should lower the
classifier's confidence in its prediction. For each image, square patches of side 1/8 of the
image side, filled with the dataset mean, are placed one after the other; each patch's centre is
drawn from P proportional to H over the pixels not occluded yet (the occluded mass removed, so
no pixel is drawn twice), and the patch is clipped at the image border. After each patch the
softmax probability p_t of the class predicted on the intact image is recorded; an image stops
after the patch that brings its occluded area to at least 30% of its pixels. Its score is the
mean over its steps of p_0 - p_t; a method's score is the mean over images. The thesis compares
its maps with Deconv+GB by this study ("mean difference in prediction confidence 2%").

Decisions where the spec is silent: the patch side is round(side / 8) (at least 1 pixel), a
patch of even side s centred at pixel k covers k - s//2 ... k - s//2 + s - 1; when no heatmap
mass is left outside the occluded pixels, the next centre is drawn uniformly from them. All
images of a batch advance together (one forward per step) and stop on their own; the draws come
from one seeded CPU generator, so a trace is the same for the same inputs and seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["OcclusionTrace", "box_occlusion", "patch_side"]


@dataclass(frozen=True)
class OcclusionTrace:
    """The study on a batch of B images, T steps (the longest image's).

    Attributes:
        classes: (B,) the class predicted on the intact images.
        p0: (B,) its softmax probability on the intact images.
        probs: (B, T) p_t after each patch; NaN after an image stopped.
        occluded: (B, T) the fraction of occluded pixels after each patch; NaN after the stop.
        centres: (B, T, 2) the (row, col) of each patch's centre; -1 after the stop.
    """

    classes: Tensor
    p0: Tensor
    probs: Tensor
    occluded: Tensor
    centres: Tensor

    def scores(self) -> Tensor:
        """(B,) the mean over each image's steps of p_0 - p_t."""
        return (self.p0[:, None] - self.probs).nanmean(1)


def patch_side(side: int, fraction: float = 1 / 8) -> int:
    """round(side * fraction), halves up, at least 1."""
    return max(1, math.floor(side * fraction + 0.5))


def _patches(centres: Tensor, height: int, width: int, side: tuple[int, int]) -> Tensor:
    """(b, H, W) bool: the patch around each (row, col) of ``centres`` (b, 2), clipped."""
    top = centres[:, 0:1] - side[0] // 2
    left = centres[:, 1:2] - side[1] // 2
    rows = torch.arange(height)[None]
    cols = torch.arange(width)[None]
    in_rows = (rows >= top) & (rows < top + side[0])
    in_cols = (cols >= left) & (cols < left + side[1])
    return in_rows[:, :, None] & in_cols[:, None, :]


def _confidence(net: nn.Module, images: Tensor, classes: Tensor) -> Tensor:
    return net(images).softmax(1).gather(1, classes[:, None])[:, 0]


@torch.no_grad()
def box_occlusion(
    net: nn.Module,
    images: Tensor,
    heatmaps: Tensor,
    fill: Tensor,
    patch_fraction: float = 1 / 8,
    max_fraction: float = 0.3,
    seed: int = 0,
) -> OcclusionTrace:
    """Occlude ``images`` (B, C, H, W) by patches drawn from ``heatmaps`` (B, H, W), filled with
    ``fill`` (C,) (the dataset mean, in the space the net reads); see the module docstring."""
    batch, channels, height, width = images.shape
    if heatmaps.shape != (batch, height, width):
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} do not match images {images.shape}")
    side = (patch_side(height, patch_fraction), patch_side(width, patch_fraction))
    generator = torch.Generator().manual_seed(seed)
    mass = heatmaps.detach().float().cpu().clamp_min(0).flatten(1)
    fill = fill.to(images.device, images.dtype).view(1, channels, 1, 1)
    net = net.eval()
    logits = net(images)
    classes = logits.argmax(1)
    p0 = logits.softmax(1).gather(1, classes[:, None])[:, 0].float().cpu()
    occluded = torch.zeros(batch, height, width, dtype=torch.bool)
    active = torch.ones(batch, dtype=torch.bool)
    probs, fractions, centres = [], [], []
    while active.any():
        rows = active.nonzero()[:, 0]
        free = ~occluded[rows].flatten(1)
        weights = mass[rows] * free
        empty = weights.sum(1) <= 0  # no mass left: uniform over the free pixels
        weights[empty] = free[empty].float()
        drawn = torch.multinomial(weights, 1, generator=generator)[:, 0]
        centre = torch.stack([drawn // width, drawn % width], 1)
        occluded[rows] |= _patches(centre, height, width, side)
        mask = occluded[rows].to(images.device)[:, None]
        masked = torch.where(mask, fill, images[rows])
        step_probs = torch.full((batch,), float("nan"))
        step_probs[rows] = _confidence(net, masked, classes[rows]).float().cpu()
        step_fraction = torch.full((batch,), float("nan"), dtype=torch.float64)
        step_fraction[rows] = occluded[rows].sum((1, 2)).double() / (height * width)
        step_centres = torch.full((batch, 2), -1, dtype=torch.long)
        step_centres[rows] = centre
        probs.append(step_probs)
        fractions.append(step_fraction)
        centres.append(step_centres)
        active[rows[step_fraction[rows] >= max_fraction]] = False
    return OcclusionTrace(
        classes.cpu(), p0, torch.stack(probs, 1), torch.stack(fractions, 1), torch.stack(centres, 1)
    )
