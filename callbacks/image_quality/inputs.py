"""The checks every image-quality function makes on its inputs, with one error per mistake."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["as_float64_pair", "check_data_range"]

#: Relative slack when the target's value span is compared with ``data_range`` (rounding).
SPAN_SLACK = 1e-6


def check_data_range(data_range: float) -> float:
    """``data_range`` as a float, refused unless finite and > 0."""
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a finite number > 0, got {data_range!r}")
    return value


def as_float64_pair(preds: Tensor, target: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    """``preds`` and ``target`` (N, C, H, W) as float64 on their device, after the checks.

    Refused, with a ``ValueError`` naming the problem: other shapes than one common 4-D shape,
    integer images (their range is not 0..1), NaN or infinite values, and a target whose values
    span more than ``data_range`` (0-255 images scored with ``data_range=1.0``, for example).
    ``preds`` may overshoot the range (a generator's raw output): it is scored as it is.
    """
    data_range = check_data_range(data_range)
    for name, images in (("preds", preds), ("target", target)):
        if not isinstance(images, Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"{name} must be images (N, C, H, W), got {shape}")
        if not images.is_floating_point():
            raise ValueError(
                f"{name} images are {images.dtype}; pass floating-point images and their "
                "data_range (1.0 for [0, 1])"
            )
    if preds.shape != target.shape:
        raise ValueError(
            f"preds and target images differ in shape: {tuple(preds.shape)} and "
            f"{tuple(target.shape)}"
        )
    preds, target = preds.double(), target.double()
    for name, images in (("preds", preds), ("target", target)):
        if not torch.isfinite(images).all():
            raise ValueError(f"{name} images hold NaN or infinite values")
    if target.numel() == 0:
        return preds, target
    low, high = target.min().item(), target.max().item()
    if high - low > data_range * (1 + SPAN_SLACK):
        raise ValueError(
            f"target images span [{low:g}, {high:g}], more than data_range={data_range:g}; "
            "set data_range to the images' value range (255.0 for 0-255 images)"
        )
    return preds, target
