"""A thin OpenCV painter: output pixels in, fixed-point drawing on a supersampled canvas."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from datamodules.synthetic.face_factors import Pose
from datamodules.synthetic.face_geometry import Camera

_FRACTION_BITS = 2


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB colour (floats 0..255) of an HSV triple in [0, 1]."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _color(rgb) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, int(float(v) + 0.5))) for v in rgb)
    return r, g, b


class Painter:
    """Draws filled shapes and lines given in output pixels onto a canvas ``supersample`` x larger.

    Args:
        canvas: uint8 (H * s, W * s, 3) image drawn in place.
        camera: maps head and canonical points to output pixels.
        supersample: canvas pixels per output pixel.
        pose: the head pose (for visibility decisions and ellipse angles).
    """

    def __init__(self, canvas: np.ndarray, camera: Camera, supersample: int, pose: Pose) -> None:
        self.canvas = canvas
        self.camera = camera
        self.pose = pose
        self.pose_roll = pose.roll
        self._scale = supersample * (1 << _FRACTION_BITS)
        # canvas pixels per canonical pixel of the head (line widths are given in canonical px)
        self.unit = camera.zoom * supersample * pose.scale

    def _fix(self, points: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(points) * self._scale).astype(np.int32).reshape(-1, 2)

    def poly(self, points: np.ndarray, rgb) -> None:
        """Fill a simple polygon (N, 2)."""
        cv2.fillPoly(self.canvas, [self._fix(points)], _color(rgb), cv2.LINE_8, _FRACTION_BITS)

    def convex(self, points: np.ndarray, rgb) -> None:
        """Fill the convex hull of (N, 2) points."""
        hull = cv2.convexHull(self._fix(points))
        cv2.fillConvexPoly(self.canvas, hull, _color(rgb), cv2.LINE_8, _FRACTION_BITS)

    def line(self, points: np.ndarray, rgb, width: float, closed: bool = False) -> None:
        """Polyline through (N, 2) points, ``width`` in canonical pixels."""
        thickness = max(1, int(round(width * self.unit)))
        cv2.polylines(
            self.canvas,
            [self._fix(points)],
            closed,
            _color(rgb),
            thickness,
            cv2.LINE_8,
            _FRACTION_BITS,
        )

    def ellipse(self, center, axes, rgb, angle: float = 0.0, width: float = -1.0) -> None:
        """Ellipse at ``center`` (output px) with semi-axes in canonical px; filled if width < 0."""
        c = tuple(int(v) for v in self._fix(center)[0])
        ax = np.maximum(np.round(np.asarray(axes) * self.unit * (1 << _FRACTION_BITS)), 1)
        thickness = -1 if width < 0 else max(1, int(round(width * self.unit)))
        cv2.ellipse(
            self.canvas,
            c,
            (int(ax[0]), int(ax[1])),
            float(angle),
            0.0,
            360.0,
            _color(rgb),
            thickness,
            cv2.LINE_8,
            _FRACTION_BITS,
        )
