"""The hallucination figures (spec section 7), drawn with torchvision's ``make_grid`` /
``save_image``; images in [-1, 1], one row per example, columns as each docstring says.

- ``save_hallucinations`` (Fig. 6.4): LR nearest-upsampled, the m exemplars, I_SR, I_HR.
- ``save_weight_maps`` (Fig. 6.6): each exemplar with W at H_LR (nearest-upsampled to HR) overlaid
  in the jet colormap (``jet``, implemented in torch: blue 0, red 1).
- ``save_fusion_comparison`` (Fig. 6.9): LR, average fusion's I_SR, PWAVE's I_SR and its W overlays,
  I_HR.
- ``save_editing`` (Figs. 6.1, 6.10, 6.11): LR, I_SR with the same identity's exemplars, then per
  other exemplar set its first exemplar and the I_SR it gives, and I_HR.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from experiments.figure_grids import save_rows

__all__ = [
    "jet",
    "overlay",
    "save_editing",
    "save_fusion_comparison",
    "save_hallucinations",
    "save_weight_maps",
    "upsampled",
]


def jet(values: Tensor) -> Tensor:
    """The jet colormap: values (..., H, W) in [0, 1] (clamped) -> RGB (..., 3, H, W) in [0, 1]."""
    v = values.clamp(0, 1)[..., None, :, :]
    channels = [1.5 - (4 * v - centre).abs() for centre in (3.0, 2.0, 1.0)]  # r, g, b
    return torch.cat(channels, dim=-3).clamp(0, 1)


def upsampled(images: Tensor, size: int) -> Tensor:
    """(N, C, h, w) nearest-upsampled to (N, C, size, size)."""
    return F.interpolate(images.float(), size=(size, size), mode="nearest")


def overlay(exemplars: Tensor, weights: Tensor, alpha: float = 0.5) -> Tensor:
    """(N, m, 3, S, S) in [-1, 1]: each exemplar blended with jet(W) of its weights
    (N, m, 1, h, h), upsampled to S; W in [0, 1] is shown as is (not rescaled per image)."""
    n, m, _, size, _ = exemplars.shape
    heat = jet(upsampled(weights.flatten(0, 1), size)[:, 0]).view(n, m, 3, size, size)
    return (1 - alpha) * exemplars.float() + alpha * (heat * 2 - 1)


def _columns(stack: Tensor) -> list[Tensor]:
    """(N, m, 3, S, S) -> m columns (N, 3, S, S)."""
    return list(stack.unbind(1))


def save_hallucinations(
    lr: Tensor, exemplars: Tensor, sr: Tensor, hr: Tensor, path: Path, count: int = 8
) -> Path:
    """Fig. 6.4: LR (nearest-upsampled), exemplars 1..m, I_SR, I_HR per row."""
    size = hr.shape[-1]
    return save_rows([upsampled(lr, size), *_columns(exemplars), sr, hr], path, count)


def save_weight_maps(exemplars: Tensor, weights: Tensor, path: Path, count: int = 8) -> Path:
    """Fig. 6.6: exemplars 1..m, then each with jet(W at H_LR) overlaid, per row."""
    return save_rows([*_columns(exemplars), *_columns(overlay(exemplars, weights))], path, count)


def save_fusion_comparison(
    lr: Tensor,
    average_sr: Tensor,
    pwave_sr: Tensor,
    exemplars: Tensor,
    weights: Tensor,
    hr: Tensor,
    path: Path,
    count: int = 8,
) -> Path:
    """Fig. 6.9: LR, average fusion's I_SR, PWAVE's I_SR, PWAVE's W over exemplars 1..m, I_HR."""
    size = hr.shape[-1]
    columns = [upsampled(lr, size), average_sr, pwave_sr, *_columns(overlay(exemplars, weights))]
    return save_rows([*columns, hr], path, count)


def save_editing(
    lr: Tensor,
    own_sr: Tensor,
    edits: list[tuple[Tensor, Tensor]],
    hr: Tensor,
    path: Path,
    count: int = 8,
) -> Path:
    """Figs. 6.10 / 6.11: LR, I_SR with the own identity's exemplars, then per edit (exemplars
    (N, m, 3, S, S), I_SR) the first exemplar and the I_SR, and I_HR."""
    size = hr.shape[-1]
    columns = [upsampled(lr, size), own_sr]
    for exemplars, sr in edits:
        columns += [exemplars[:, 0], sr]
    return save_rows([*columns, hr], path, count)
