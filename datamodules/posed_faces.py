"""Face images with head-pose labels, mirrored at random with the pose corrected: one CelebA split.

``PosedFaces[i]`` is a ``datamodules.celeba.CelebAFaces`` item (the aligned image cut to the crop
box) whose crop is optionally luminance-equalised and mirrored with probability
``flip_probability`` before the transform. Its ``pose`` is (yaw, pitch, roll) in radians, fitted
from the five aligned landmarks (``datamodules.head_pose.pose_from_landmarks``; a similarity
transform of the points, such as the crop and resize, leaves the angles unchanged). A mirrored
image gets the mirrored pose (yaw and roll negated, ``flip_pose``), so the label always describes
the pixels the network sees.

Items: ``image`` float (3, S, S) (the transform's range), ``pose`` float (3,) radians,
``identity`` long, ``attributes`` float (L,) in {0, 1}, ``image_id`` str, ``flipped`` bool.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from datamodules.celeba import CelebAFaces
from datamodules.formats.celeba import CelebAIndex
from datamodules.head_pose import flip_pose

__all__ = ["PosedFaces", "equalize_luminance"]


def equalize_luminance(image: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise the luminance of a uint8 (3, H, W) RGB image, keeping its chroma.

    The image goes to YCbCr (PIL, ITU-R BT.601), ``ImageOps.equalize`` is applied to Y only, and
    the result comes back to RGB (uint8 (3, H, W)).
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape)
        raise ValueError(f"expected a uint8 (3, H, W) image, got {image.dtype} {shape}")
    y, cb, cr = Image.fromarray(image.permute(1, 2, 0).numpy()).convert("YCbCr").split()
    rgb = Image.merge("YCbCr", (ImageOps.equalize(y), cb, cr)).convert("RGB")
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


class PosedFaces(CelebAFaces):
    """One split of aligned faces with pose labels.

    Args:
        index: The cross-checked tables.
        rows: Row numbers (into ``index``) of this split.
        columns: Attribute columns kept.
        poses: float (len(index), 3) yaw, pitch, roll in radians of every unmirrored image of
            ``index`` (indexed by row like ``index``).
        transform: uint8 (3, h, w) crop -> float (3, S, S).
        crop: ``(top, left, height, width)`` cut before anything else, or None.
        flip_probability: Chance of mirroring an item (0 for evaluation splits).
        hist_eq: Equalise the luminance histogram of the crop.
    """

    def __init__(
        self,
        index: CelebAIndex,
        rows: torch.Tensor,
        columns: list[int],
        poses: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor],
        crop: tuple[int, int, int, int] | None,
        flip_probability: float = 0.0,
        hist_eq: bool = False,
    ) -> None:
        super().__init__(index, rows, columns, transform, crop)
        if poses.shape != (len(index.names), 3):
            raise ValueError(
                f"poses must be ({len(index.names)}, 3), one row per image of the index, got "
                f"{tuple(poses.shape)}"
            )
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        self.poses = poses[rows].float()
        self.flip_probability, self.hist_eq = flip_probability, hist_eq

    def __getitem__(self, i: int) -> dict:
        image = self.read_crop(i)
        if self.hist_eq:
            image = equalize_luminance(image)
        pose = self.poses[i]
        flipped = bool(self.flip_probability > 0 and torch.rand(()) < self.flip_probability)
        if flipped:
            image, pose = image.flip(-1), flip_pose(pose[None])[0]
        return {
            "image": self.transform(image),
            "pose": pose,
            "identity": self.identities[i],
            "attributes": self.attributes[i].float(),
            "image_id": self.names[i],
            "flipped": flipped,
        }
