"""The frames of a clip tree as posed faces: the disentangled AAE's style source on real clips.

A clip tree (``datamodules.formats.clip_tree``: VoxCeleb-like ``<identity>/<clip>/<frame>.jpg``,
aligned like CelebA, with CelebA's landmark table) serves the style macro-batches of Stage B when
real clips exist (the face twin's ``vox/``; real CelebA uses ``datamodules/pseudo_clips.py``).
Each frame is cut to the crop box, optionally luminance-equalised and mirrored with probability
``flip_probability`` (the pose mirrored with it), then transformed, like ``PosedFaces``. Poses are
fitted from the frames' landmarks (``datamodules.head_pose.pose_from_landmarks``), exactly as for
CelebA. ``identities`` and ``clips`` label every item for ``datamodules.samplers.ClipSetSampler``
(P persons x C clips x F frames).

Items: ``image`` float (3, S, S) (the transform's range), ``pose`` float (3,) yaw, pitch, roll in
radians, ``identity`` long (index into ``index.identity_names``), ``clip`` long (index into
``index.clip_names``: one per (identity, clip)), ``image_id`` str (the frame's relative path),
``flipped`` bool.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from datamodules.face_views import FaceView, read_view
from datamodules.formats.clip_tree import ClipTreeIndex
from datamodules.head_pose import pose_from_landmarks

__all__ = ["ClipTreeFaces"]


class ClipTreeFaces(Dataset):
    """Every frame of a clip tree, with its pose, identity and clip.

    Args:
        index: The tree (``read_clip_tree``).
        transform: uint8 (3, h, w) crop -> float (3, S, S).
        crop: ``(top, left, height, width)`` cut before anything else, or None.
        flip_probability: Chance of mirroring a frame (pose corrected); 0 for evaluation.
        hist_eq: Equalise the luminance histogram of the crop.
        poses: float (N, 3) yaw, pitch, roll in radians of the unmirrored frames; None fits them
            from ``index.landmarks``.

    Raises:
        ValueError: ``flip_probability`` outside [0, 1], ``poses`` of the wrong shape, or
            degenerate landmarks (naming the frame).
    """

    def __init__(
        self,
        index: ClipTreeIndex,
        transform: Callable[[torch.Tensor], torch.Tensor],
        crop: tuple[int, int, int, int] | None,
        flip_probability: float = 0.0,
        hist_eq: bool = False,
        poses: torch.Tensor | None = None,
    ) -> None:
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        if poses is None:
            poses = pose_from_landmarks(index.landmarks, names=index.paths)
        if poses.shape != (len(index.paths), 3):
            raise ValueError(
                f"poses must be ({len(index.paths)}, 3), one row per frame, got "
                f"{tuple(poses.shape)}"
            )
        self.root, self.names = index.root, index.paths
        self.identities, self.clips = index.identity, index.clip  # long (N,) each
        self.poses = poses.float()
        self.transform, self.crop = transform, crop
        self.flip_probability, self.hist_eq = flip_probability, hist_eq

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        flipped = bool(self.flip_probability > 0 and torch.rand(()) < self.flip_probability)
        view = FaceView(flip=flipped)
        crop = read_view(self.root / self.names[i], self.crop, view, self.hist_eq)
        return {
            "image": self.transform(crop),
            "pose": view.pose(self.poses[i]),
            "identity": self.identities[i],
            "clip": self.clips[i],
            "image_id": self.names[i],
            "flipped": flipped,
        }
