"""OLR's losses: the Siamese pair loss L_S, its targets and baseline, and the decoder loss L_R.

Pair loss (PAPER): for the embeddings E_a, E_b (B, L, k) of two occluded images and the frozen
classifier's probabilities p_a, p_b (B, L) on the same occluded images,

    u_l = <e_a^l, e_b^l> = sum_j E_a[l, j] E_b[l, j],   t_l = p_a^l p_b^l,
    L_S = mean over the batch and the L labels of (u_l - t_l)^2.

Decoder loss (PAPER eq. 3, with 1 - SSIM as the quantity to minimise):

    L_R = alpha (1 - SSIM(x~, Conv2D_out)) + (1 - alpha) MSE(x~, Rescale(Conv2D_out)),

alpha = 0.5, x~ the input crop without its 1-px border. SSIM is the suite's metric definition
(``callbacks.image_quality.ssim``: gaussian window 11, sigma 1.5, K1 0.01, K2 0.03,
data_range 1, per channel over the valid region, then averaged), run in float32 with autograd
(``components.ssim_loss.ssim_float32``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lightning_modules.components.ssim_loss import ssim_float32
from lightning_modules.olr.decoder import rescale

__all__ = [
    "ReconstructionLoss",
    "constant_target_loss",
    "pair_loss",
    "pair_targets",
    "reconstruction_loss",
    "row_dots",
]


def row_dots(e_a: Tensor, e_b: Tensor) -> Tensor:
    """u (B, L): the dot product of each label's rows, ``u[i, l] = <e_a[i, l], e_b[i, l]>``."""
    if e_a.shape != e_b.shape or e_a.ndim != 3:
        raise ValueError(
            f"pair embeddings must share one (B, L, k) shape, got {tuple(e_a.shape)} and "
            f"{tuple(e_b.shape)}"
        )
    return (e_a * e_b).sum(dim=-1)


def pair_targets(
    logits_a: Tensor,
    logits_b: Tensor,
    targets: Literal["occlusion", "temperature"] = "occlusion",
    temperature: float = 2.0,
) -> Tensor:
    """t (B, L) from the teacher's logits on the two occluded images of each pair.

    ``occlusion`` (PAPER): ``t = sigmoid(z_a) sigmoid(z_b)``, the joint probability of the label
    on both images. ``temperature`` (the paper's rejected alternative, an ablation):
    ``t = sigmoid(z_a / T) sigmoid(z_b / T)``, softened probabilities.
    """
    if targets == "occlusion":
        scale = 1.0
    elif targets == "temperature":
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        scale = 1.0 / temperature
    else:
        raise ValueError(f"targets must be 'occlusion' or 'temperature', got {targets!r}")
    return torch.sigmoid(logits_a * scale) * torch.sigmoid(logits_b * scale)


def _reduce(squared_gaps: Tensor, reduction: Literal["mean", "none"]) -> Tensor:
    if reduction == "mean":
        return squared_gaps.mean()
    if reduction == "none":
        return squared_gaps.mean(dim=-1)  # (B,): one loss per pair, mean over the labels
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def pair_loss(
    e_a: Tensor, e_b: Tensor, target: Tensor, reduction: Literal["mean", "none"] = "mean"
) -> Tensor:
    """L_S: the mean over batch and labels of ``(row_dots(e_a, e_b) - target)^2``.

    ``reduction="none"`` gives the loss of each pair (B,) (mean over labels), whose sums and
    counts add up exactly across batches and DDP ranks.
    """
    u = row_dots(e_a, e_b)
    if target.shape != u.shape:
        raise ValueError(f"target must be (B, L) = {tuple(u.shape)}, got {tuple(target.shape)}")
    return _reduce((u - target).square(), reduction)


def constant_target_loss(
    target: Tensor,
    mean_target: Tensor | float | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """The pair loss of predicting a constant: mean of ``(target - mean_target)^2``.

    ``mean_target`` is one value per label (L,) or one number (typically the train pairs' mean
    target); ``None`` takes each label's mean over ``target`` itself, the best constant there.
    ``reduction`` as in ``pair_loss``.
    """
    if mean_target is None:
        mean_target = target.mean(dim=0)
    return _reduce((target - mean_target).square(), reduction)


class ReconstructionLoss(NamedTuple):
    """L_R and its two parts (scalars): ``total = alpha ssim + (1 - alpha) mse``."""

    total: Tensor
    ssim: Tensor  # mean of 1 - SSIM(x~, Conv2D_out)
    mse: Tensor  # MSE(x~, Rescale(Conv2D_out))


def reconstruction_loss(
    conv_out: Tensor, target: Tensor, ssim_weight: float = 0.5
) -> ReconstructionLoss:
    """L_R of the decoder's Conv2D_out (B, 3, S, S) against x~ (B, 3, S, S) in [0, 1].

    Args:
        conv_out: The decoder's output before Rescale (``ReconstructionDecoder.forward``).
        target: x~ = ``reconstruction_target(images)``.
        ssim_weight: alpha of eq. (3) (0.5).
    """
    if conv_out.shape != target.shape:
        raise ValueError(
            f"decoder output {tuple(conv_out.shape)} and target {tuple(target.shape)} differ; "
            "the target is reconstruction_target(images), 2 px smaller than the input"
        )
    if not 0.0 <= ssim_weight <= 1.0:
        raise ValueError(f"ssim_weight (alpha) must be in [0, 1], got {ssim_weight}")
    ssim_part = (1.0 - ssim_float32(conv_out, target)).mean()
    with torch.autocast(device_type=conv_out.device.type, enabled=False):
        mse_part = (rescale(conv_out.float()) - target.float()).square().mean()
    total = ssim_weight * ssim_part + (1.0 - ssim_weight) * mse_part
    return ReconstructionLoss(total, ssim_part, mse_part)
