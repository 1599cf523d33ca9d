"""Head pose (yaw, pitch, roll) from CelebA's five aligned landmarks, and its horizontal flip.

Real CelebA has no head-pose labels (the disentangle spec, section 2, "Pose labels"); the suite
derives them from ``list_landmarks_align_celeba.txt`` by fitting the generic 3D face
:data:`MEAN_FACE_5` under scaled-orthographic projection: a closed-form least-squares affine camera
(2 x 3 plus translation), the nearest pair of orthonormal rows times a scale (the polar factor of
its SVD), the third row as their cross product, and Euler angles read off the rotation.

Convention (the synthetic renderer's, ``datamodules/synthetic/face_geometry.py::rotation``, so that
real and synthetic labels mean the same thing). Head and image coordinates are x right, y down,
z towards the viewer; a landmark is ``u = s * (R X)[:2] + t`` with

    R = Rz(roll) Rx(pitch) Ry(yaw),
    Ry(a) = [[c, 0, s], [0, 1, 0], [-s, 0, c]],
    Rx(a) = [[1, 0, 0], [0, c, -s], [0, s, c]],
    Rz(a) = [[c, -s, 0], [s, c, 0], [0, 0, 1]].

So yaw > 0 turns the face to the image's right (the nose tip moves right), pitch > 0 tilts it up
(the nose tip moves up the image) and roll > 0 turns it clockwise on screen (the image-right eye
moves down). Angles are in radians. From ``R``: ``pitch = asin(R[2, 1])``,
``yaw = atan2(-R[2, 0], R[2, 2])``, ``roll = atan2(-R[0, 1], R[1, 1])``.

The spec crops ``img_align_celeba`` to x in [14, 164), y in [40, 190) and resizes to 128: a
translation and a uniform scale, which leave the pose unchanged, so the pose of the final crop is
the pose of the aligned landmarks and no crop-space landmarks are needed. (An in-plane rotation of
the image by ``theta`` clockwise would add ``theta`` to roll and change nothing else.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["MEAN_FACE_5", "flip_landmarks", "flip_pose", "pose_from_landmarks"]

# A generic adult face in mm, head coordinates (x right, y down, z towards the viewer), origin at
# the midpoint of the pupils; rows in CelebA's landmark order. Lateral and vertical proportions are
# those of the mean aligned CelebA layout (eyes 39 px apart, nose tip 24 px and mouth corners 41 px
# below the eye line, mouth 32 px wide), scaled to the adult mean interpupillary distance (IPD) of
# about 63 mm and rounded to whole mm: a 52 mm mouth and a nose tip 39 mm below the pupils, within
# adult anthropometric norms (the mean CelebA layout itself reads yaw = roll = 0, pitch 0.75 deg).
# Depths follow a typical adult profile: the corneal apex lies a few mm behind the soft-tissue
# nasion and the nose tip 15-25 mm in front of it, so the nose tip is about 25 mm (0.4 IPD) in
# front of the pupils; the upper-lip midline is near the nasion's depth and the mouth corners sit
# 12-15 mm behind it along the dental arch, about 5 mm behind the pupils. The face is exactly
# symmetric in x, which makes the flip identity exact. Read-only: copy it to change it.
MEAN_FACE_5 = np.array(
    [
        [-31.5, 0.0, 0.0],  # left eye (image left: the subject's right eye), pupil centre
        [31.5, 0.0, 0.0],  # right eye
        [0.0, 39.0, 25.0],  # nose tip (pronasale)
        [-26.0, 66.0, -5.0],  # left mouth corner (cheilion)
        [26.0, 66.0, -5.0],  # right mouth corner
    ],
    dtype=np.float64,
)
MEAN_FACE_5.flags.writeable = False

_MIRROR_ORDER = (1, 0, 2, 4, 3)  # the landmark order after a mirror: eyes and mouth corners swap
_DEGENERATE = 1e-6  # smallest / largest singular value of the fitted camera below this: no pose


def pose_from_landmarks(
    landmarks: Tensor,
    names: Sequence[str] | None = None,
    face: np.ndarray | Tensor | None = None,
) -> Tensor:
    """Yaw, pitch and roll of each face from its five landmarks (module docstring: convention).

    Args:
        landmarks: (N, 10) rows ``lefteye_x lefteye_y righteye_x ... rightmouth_y`` or (N, 5, 2)
            pixel coordinates (x right, y down), any real dtype; left and right are image sides.
        names: optional N row names (image file names), used in error messages.
        face: (5, 3) 3D points in the same order and axes to fit instead of :data:`MEAN_FACE_5`.

    Returns:
        (N, 3) yaw, pitch, roll in radians, computed in float64 and returned in the landmarks'
        dtype if it is floating point, else in torch's default dtype; on the landmarks' device.

    Raises:
        ValueError: for another shape, a ``names`` or ``face`` of the wrong size, a non-finite
            coordinate, or a degenerate row (coincident or collinear points), naming the row.
    """
    points = _as_points(landmarks)  # (N, 5, 2) float64
    if names is not None and len(names) != points.shape[0]:
        raise ValueError(f"got {len(names)} names for {points.shape[0]} landmark rows")
    _check_finite(points, names)
    model = _face_points(MEAN_FACE_5 if face is None else face).to(points.device)
    # Least-squares affine camera: centred u_k = M X_k, so M = U^T X (X^T X)^-1, (N, 2, 3).
    solve = torch.linalg.pinv(model)  # (3, 5)
    camera = torch.einsum("nkd,ek->nde", points - points.mean(1, keepdim=True), solve)
    u, s, vh = torch.linalg.svd(camera, full_matrices=False)  # (N, 2, 2), (N, 2), (N, 2, 3)
    _check_rank(s, names)
    rows = u @ vh  # (N, 2, 3) the nearest orthonormal rows: scaled-orthographic camera
    rot = torch.cat([rows, torch.linalg.cross(rows[:, 0], rows[:, 1])[:, None]], 1)  # (N, 3, 3)
    pitch = torch.asin(rot[:, 2, 1].clamp(-1.0, 1.0))
    yaw = torch.atan2(-rot[:, 2, 0], rot[:, 2, 2])
    roll = torch.atan2(-rot[:, 0, 1], rot[:, 1, 1])
    dtype = landmarks.dtype if landmarks.is_floating_point() else torch.get_default_dtype()
    return torch.stack([yaw, pitch, roll], 1).to(dtype)


def flip_pose(pose: Tensor) -> Tensor:
    """The pose of the horizontally mirrored image: yaw and roll change sign, pitch does not.

    Mirroring conjugates the rotation by S = diag(-1, 1, 1), and S Rz(r) Rx(p) Ry(y) S =
    Rz(-r) Rx(p) Ry(-y).

    Args:
        pose: (..., 3) yaw, pitch, roll (any angle unit).

    Raises:
        ValueError: if the last dimension is not 3.
    """
    if pose.ndim == 0 or pose.shape[-1] != 3:
        raise ValueError(f"pose must be (..., 3) yaw, pitch, roll; got shape {tuple(pose.shape)}")
    return pose * pose.new_tensor([-1.0, 1.0, -1.0])


def flip_landmarks(landmarks: Tensor, width: int) -> Tensor:
    """The landmarks of the horizontally mirrored image: x -> width - 1 - x, left/right swapped.

    Coordinates are pixel indices (the centre of column j is x = j, as CelebA's integer landmarks
    are): ``torchvision``'s ``hflip`` moves column j to column width - 1 - j, so a landmark on a
    pixel stays on that pixel. The image-left eye becomes the image-right eye and so do the mouth
    corners, so those rows swap and the output keeps CelebA's order.

    Args:
        landmarks: (N, 10) or (N, 5, 2) pixel coordinates; the shape and dtype are kept.
        width: the image width in pixels.

    Raises:
        ValueError: for another shape or a width below 1.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    points = _check_shape(landmarks).reshape(-1, 5, 2)[:, list(_MIRROR_ORDER)]
    flipped = torch.stack([(width - 1) - points[..., 0], points[..., 1]], -1)
    return flipped.reshape(landmarks.shape)


def _check_shape(landmarks: Tensor) -> Tensor:
    """``landmarks`` itself if it is (N, 10) or (N, 5, 2), else a ValueError."""
    if not isinstance(landmarks, Tensor):
        raise ValueError(f"landmarks must be a torch.Tensor, got {type(landmarks).__name__}")
    shape = tuple(landmarks.shape)
    if shape[1:] not in ((10,), (5, 2)):
        raise ValueError(f"landmarks must be (N, 10) or (N, 5, 2) pixel coordinates, got {shape}")
    if landmarks.is_complex() or landmarks.dtype == torch.bool:
        raise ValueError(f"landmarks must be real numbers, got dtype {landmarks.dtype}")
    return landmarks


def _as_points(landmarks: Tensor) -> Tensor:
    """(N, 5, 2) float64 points from (N, 10) or (N, 5, 2) landmarks."""
    return _check_shape(landmarks).reshape(-1, 5, 2).to(torch.float64)


def _face_points(face: np.ndarray | Tensor) -> Tensor:
    """(5, 3) float64 centred copy of a 3D face, or a ValueError."""
    if isinstance(face, Tensor):
        model = face.detach().to("cpu", torch.float64, copy=True)
    else:
        model = torch.tensor(np.array(face, dtype=np.float64))
    if model.shape != (5, 3) or not torch.isfinite(model).all():
        raise ValueError(f"face must be a finite (5, 3) array, got shape {tuple(model.shape)}")
    return model - model.mean(0)


def _row(index: int, names: Sequence[str] | None) -> str:
    return f"row {index}" + (f" ({names[index]})" if names is not None else "")


def _check_finite(points: Tensor, names: Sequence[str] | None) -> None:
    """Raise naming the first row with a NaN or infinite coordinate."""
    bad = (~torch.isfinite(points)).flatten(1).any(1).nonzero()
    if len(bad):
        i = int(bad[0])
        values = points[i].flatten().tolist()
        raise ValueError(f"landmarks {_row(i, names)} has non-finite coordinates: {values}")


def _check_rank(singular: Tensor, names: Sequence[str] | None) -> None:
    """Raise naming the first row whose fitted camera is (nearly) rank deficient."""
    bad = (singular[:, 1] <= _DEGENERATE * singular[:, 0]).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"landmarks {_row(i, names)} are degenerate (coincident or collinear points), "
            "so they determine no pose"
        )
