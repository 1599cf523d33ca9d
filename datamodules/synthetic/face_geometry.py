"""The parametric 3D head of the synthetic faces and its orthographic projection.

Head coordinates are pixels of the 178 x 218 CelebA frame at zero pose, centred on the head
(x right, y down, z towards the viewer). The head is an ellipsoid (semi-axes 51, 61, 50 px times the
identity's width and aspect) whose lower half is widened by the jaw parameter. At zero pose,
unit scale and no shift, the landmarks fall on CelebA's aligned positions: eyes (69, 111) and
(108, 111), nose tip (88.5, 135), mouth corners about (72.5, 152) and (104.5, 152).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.synthetic.face_factors import Expression, Identity, Pose

HEAD_CENTER = np.array([88.5, 111.0])
HEAD_AXES = np.array([51.0, 61.0, 50.0])
EYE_X, NOSE_Y, MOUTH_Y, MOUTH_HALF_WIDTH = 19.5, 24.0, 41.0, 16.0
FRAME = (178, 218)  # the canonical CelebA frame (width, height)
FAR_EYE_HIDDEN_DEG = 35.0

_theta, _phi = np.meshgrid(np.linspace(0, 2 * np.pi, 28, endpoint=False), np.linspace(0, np.pi, 15))
UNIT_SPHERE = np.stack(
    [np.sin(_phi) * np.cos(_theta), -np.cos(_phi), np.sin(_phi) * np.sin(_theta)], -1
).reshape(-1, 3)


def rotation(pose: Pose) -> np.ndarray:
    """R = Rz(roll) Rx(pitch) Ry(yaw); yaw > 0 moves the face to the right, pitch > 0 up."""
    y, p, r = np.radians([pose.yaw, pose.pitch, pose.roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


@dataclass(frozen=True)
class Camera:
    """Maps head points (and body points of the canonical frame) to output pixels.

    Attributes:
        rot: 3 x 3 head rotation.
        head_offset: canonical-frame position of the head centre (after the pose shift).
        head_scale: pose scale.
        zoom: output pixels per canonical pixel.
        canon_center: canonical point placed at ``out_center``.
        out_center: output pixel of ``canon_center``.
    """

    rot: np.ndarray
    head_offset: np.ndarray
    head_scale: float
    zoom: float
    canon_center: np.ndarray
    out_center: np.ndarray

    def canonical(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) canonical-frame points -> output pixels (no head pose: body, background)."""
        return (points - self.canon_center) * self.zoom + self.out_center

    def head(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) head points -> (N, 2) output pixels."""
        rotated = points @ self.rot.T
        return self.canonical(rotated[:, :2] * self.head_scale + self.head_offset)

    def depth(self, points: np.ndarray) -> np.ndarray:
        """(N,) z of head points after rotation (larger is nearer the viewer)."""
        return points @ self.rot[2]


def make_camera(pose: Pose, size: tuple[int, int], framing: float) -> Camera:
    """Camera for an output of ``size`` (width, height); framing > 1 zooms on the face."""
    width, height = size
    zoom = framing * width / FRAME[0]
    canon_center = np.array([FRAME[0] / 2, FRAME[1] / 2 + 20.0 * (framing - 1.0)])
    return Camera(
        rot=rotation(pose),
        head_offset=HEAD_CENTER + np.array([pose.dx, pose.dy]),
        head_scale=pose.scale,
        zoom=zoom,
        canon_center=canon_center,
        out_center=np.array([width / 2, height / 2]),
    )


def head_axes(identity: Identity) -> np.ndarray:
    """Ellipsoid semi-axes (x, y, z) of this identity's head."""
    width = identity.face_width * (1.19 if identity.chubby else 1.0)
    return HEAD_AXES * np.array([width, identity.face_aspect, 1.0])


def jaw_factor(identity: Identity) -> float:
    """How much the lower half widens towards the chin (square male jaw, round chubby one)."""
    return (0.3 + 0.15 * identity.jaw if identity.male else 0.05 * identity.jaw) + (
        0.15 if identity.chubby else 0.0
    )


def head_points(identity: Identity, inflate: float = 1.0) -> np.ndarray:
    """(N, 3) points on the identity's head surface (jaw applied), scaled by ``inflate``."""
    points = UNIT_SPHERE * head_axes(identity) * inflate
    lower = np.clip(points[:, 1] / (HEAD_AXES[1] * inflate), 0, 1)
    points[:, 0] *= 1 + jaw_factor(identity) * lower**2
    return points


def surface(identity: Identity, xy: np.ndarray, lift: float = 0.0) -> np.ndarray:
    """Lift (N, 2) head-plane points onto the front of the ellipsoid (+ ``lift`` towards viewer)."""
    a, b, c = head_axes(identity)
    rho = 1 - (xy[:, 0] / a) ** 2 - (xy[:, 1] / b) ** 2
    z = c * np.sqrt(np.maximum(rho, 0.04)) + lift
    return np.column_stack([xy, z])


def eye_centers(identity: Identity) -> np.ndarray:
    """(2, 3) left and right (image-left first) eye centres in head coordinates."""
    x = EYE_X * identity.eye_spacing
    return surface(identity, np.array([[-x, 0.0], [x, 0.0]]), lift=1.0)


def eye_visible(side: int, pose: Pose) -> bool:
    """The far eye (the one the face turns towards the image edge) hides past |yaw| 35 deg."""
    return not (side * pose.yaw > FAR_EYE_HIDDEN_DEG)


def mouth_curve(identity: Identity, expression: Expression, n: int = 9) -> dict[str, np.ndarray]:
    """Mouth polylines in the head plane: ``mid`` (N, 2) lip line, ``upper``/``lower`` inner edges,
    ``upper_outer``/``lower_outer`` lip outlines (all left to right)."""
    v, a = expression.valence, expression.arousal
    curve = 3.6 + 2.4 * v if v > 0 else 1.5 * v  # corners up when smiling
    opening = 2.5 + 5.0 * a if a > 0 else 0.0
    opening += 2.4 if v > 0 else 0.0  # a smile parts the lips over the teeth
    half = MOUTH_HALF_WIDTH * identity.mouth_width * (1.15 if v > 0 else 1.0)
    lips = identity.lip_size * (2.1 if identity.big_lips else 1.0)
    t = np.linspace(-1, 1, n)
    mid = MOUTH_Y - curve * t**2 + curve * 0.35
    bulge = np.sqrt(1 - t**2)
    upper = mid - opening * 0.35 * bulge
    lower = mid + opening * 0.65 * bulge
    return {
        "mid": np.column_stack([half * t, mid]),
        "upper": np.column_stack([half * t, upper]),
        "lower": np.column_stack([half * t, lower]),
        "upper_outer": np.column_stack([half * t, upper - 2.8 * lips * (0.35 + 0.65 * bulge)]),
        "lower_outer": np.column_stack([half * t, lower + 3.6 * lips * (0.3 + 0.7 * bulge)]),
    }


def landmarks(
    identity: Identity,
    pose: Pose,
    expression: Expression,
    size: tuple[int, int] = FRAME,
    framing: float = 1.0,
) -> np.ndarray:
    """(5, 2) output pixels: left eye, right eye, nose tip, left and right mouth corners."""
    camera = make_camera(pose, size, framing)
    mid = mouth_curve(identity, expression)["mid"]
    nose = surface(identity, np.array([[0.0, NOSE_Y * identity.nose_length]]), lift=12.0)
    corners = surface(identity, mid[[0, -1]], lift=1.0)
    return camera.head(np.concatenate([eye_centers(identity), nose, corners]))


def face_box(
    identity: Identity, pose: Pose, size: tuple[int, int] = FRAME, framing: float = 1.0
) -> np.ndarray:
    """(x_1, y_1, width, height) of the head silhouette in output pixels."""
    points = make_camera(pose, size, framing).head(head_points(identity))
    low, high = points.min(0), points.max(0)
    return np.concatenate([low, high - low])
