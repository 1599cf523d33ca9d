"""Pose error of the pose sub-vector: mean absolute error in degrees per angle.

The ``disentangle`` spec (section 6, "Pose error") reads the pose directly off f_p, which Stage B
trains in radians against (yaw, pitch, roll) labels (Eq. 11), and reports the MAE per angle in
degrees (the paper: 2.66 / 2.95 / 2.05 degrees on CelebA test against OpenFace's poses; the suite
scores against the poses fitted from the landmarks, [SUBST]).
"""

from __future__ import annotations

import math

from torch import Tensor

from lightning_modules.disentangled_aae.factor_split import FactorSplit

__all__ = ["ANGLES", "pose_mae_degrees"]

ANGLES: tuple[str, str, str] = ("yaw", "pitch", "roll")
"""The order of the pose columns (of f_p and of the labels)."""


def pose_mae_degrees(f: Tensor, split: FactorSplit, poses: Tensor, name: str = "pose") -> Tensor:
    """Mean over images of |f_p - pose| per angle, in degrees.

    Args:
        f: Codes (N, dim), N >= 1.
        split: The split of f; its part ``name`` has 3 columns (yaw, pitch, roll, radians).
        poses: (N, 3) labels in radians, columns in ``ANGLES`` order.
        name: The pose part's name.

    Returns:
        float64 (3,) MAE of yaw, pitch and roll in degrees.
    """
    predicted = split.part(f, name)  # (N, 3)
    if predicted.shape[1] != len(ANGLES):
        raise ValueError(f"part {name!r} has {predicted.shape[1]} column(s); a pose has 3 columns")
    if poses.shape != predicted.shape or len(poses) == 0:
        raise ValueError(
            f"poses must be (N, 3) with N = {len(predicted)} >= 1 codes, got {tuple(poses.shape)}"
        )
    error = (predicted.detach().double() - poses.detach().to(predicted.device).double()).abs()
    return error.mean(0) * (180.0 / math.pi)
