"""Views of an aligned face: its crop mirrored, rotated and shifted, the head pose carried along.

A ``FaceView`` turns the crop box of an aligned image (uint8, before the float transform) into
another picture of the same face, in this order:

1. mirror (``flip``): column j of the crop goes to column w - 1 - j;
2. rotate by ``degrees`` clockwise on screen (x right, y down) about the crop's centre
   ``((w - 1) / 2, (h - 1) / 2)``: a point at offset (x, y) from the centre moves to
   (cos t x - sin t y, sin t x + cos t y), so the image-right eye moves down for t > 0;
3. shift by (``dx``, ``dy``) whole pixels (right, down).

Pixels come from the whole aligned image around the crop (bilinear; the edge pixel repeats only
past the image border), so a view has no empty corners: the disentangle pseudo-clips
(``datamodules/pseudo_clips.py``) jitter by at most 4 px and 3 degrees inside CelebA's 25 px
margins, which keeps a clip's style (background, light) that of its source image.

The pose of a view (``FaceView.pose``), in ``datamodules.head_pose``'s convention: mirroring
negates yaw and roll (``flip_pose``); a clockwise in-plane rotation by t adds t to roll and leaves
yaw and pitch; a shift changes nothing. So ``view.pose(p) = flip_pose(p) + (0, 0, t)`` when
flipped, ``p + (0, 0, t)`` otherwise (t in radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from datamodules.celeba import cut_box
from datamodules.head_pose import flip_pose
from datamodules.images import read_rgb
from datamodules.posed_faces import equalize_luminance

__all__ = ["FaceView", "draw_view", "read_view", "render_view"]


@dataclass(frozen=True)
class FaceView:
    """One view: mirror, then rotate ``degrees`` clockwise about the crop centre, then shift.

    Attributes:
        flip: Mirror the crop first.
        dx: Shift to the right in pixels (negative: left).
        dy: Shift down in pixels (negative: up).
        degrees: Clockwise in-plane rotation on screen (the direction of positive roll).
    """

    flip: bool = False
    dx: int = 0
    dy: int = 0
    degrees: float = 0.0

    def as_tensor(self) -> torch.Tensor:
        """float (4,) ``(flip, dx, dy, degrees)``: the view as a batchable record."""
        return torch.tensor([float(self.flip), self.dx, self.dy, self.degrees])

    def pose(self, pose: torch.Tensor) -> torch.Tensor:
        """The (..., 3) yaw, pitch, roll (radians) of the view of a face posed ``pose``."""
        turned = flip_pose(pose) if self.flip else pose.clone()
        turned[..., 2] += math.radians(self.degrees)
        return turned


def draw_view(
    max_shift: int = 4,
    max_degrees: float = 3.0,
    flip_probability: float = 0.5,
    generator: torch.Generator | None = None,
) -> FaceView:
    """A random view: mirrored with ``flip_probability``, ``dx`` and ``dy`` uniform integers in
    [-max_shift, max_shift], ``degrees`` uniform in [-max_degrees, max_degrees].

    Args:
        max_shift: Largest shift in pixels.
        max_degrees: Largest rotation in degrees.
        flip_probability: Chance of mirroring.
        generator: Source of the draws; None uses torch's global generator (a DataLoader worker's
            own seed).

    Raises:
        ValueError: A negative bound or a probability outside [0, 1].
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
    if not max_degrees >= 0:
        raise ValueError(f"max_degrees must be >= 0, got {max_degrees}")
    if not 0.0 <= flip_probability <= 1.0:
        raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
    flip = bool(torch.rand((), generator=generator) < flip_probability)
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
    degrees = (2 * float(torch.rand((), generator=generator)) - 1) * max_degrees
    return FaceView(flip, dx, dy, degrees)


def render_view(
    image: torch.Tensor,
    box: tuple[int, int, int, int] | None,
    view: FaceView,
    path: str | Path = "<image>",
) -> torch.Tensor:
    """The view of the crop box of an image (module docstring: the order of the steps).

    Args:
        image: uint8 (3, H, W) aligned image.
        box: ``(top, left, height, width)`` crop box, or None for the whole image.
        view: What to apply.
        path: The image's file, named when the box falls outside it.

    Returns:
        uint8 (3, height, width). The plain view (no flip, no shift, no rotation) is the crop box
        itself; mirrors and whole-pixel shifts move pixels exactly.

    Raises:
        FormatError: The box falls outside the image.
    """
    _, height_in, width_in = image.shape
    top, left, height, width = (0, 0, height_in, width_in) if box is None else box
    crop = cut_box(image, (top, left, height, width), Path(path))
    if view == FaceView():
        return crop
    # Where each output pixel (u, v) comes from, undoing the steps in reverse order.
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )  # (h, w) each
    cx, cy = (width - 1) / 2, (height - 1) / 2
    qx, qy = u - view.dx - cx, v - view.dy - cy  # undo the shift, centred
    cos, sin = math.cos(math.radians(view.degrees)), math.sin(math.radians(view.degrees))
    px, py = cx + cos * qx + sin * qy, cy - sin * qx + cos * qy  # undo the clockwise rotation
    if view.flip:
        px = (width - 1) - px
    x, y = px + left, py + top  # (h, w) source pixel coordinates in the whole image
    grid = torch.stack([2 * x / max(width_in - 1, 1) - 1, 2 * y / max(height_in - 1, 1) - 1], -1)
    sampled = F.grid_sample(
        image[None].to(torch.float64),
        grid[None],
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )[0]  # (3, h, w)
    return sampled.round().clamp(0, 255).to(torch.uint8)


def read_view(
    path: str | Path, box: tuple[int, int, int, int] | None, view: FaceView, hist_eq: bool = False
) -> torch.Tensor:
    """The view of an image file's crop box (``render_view``), luminance-equalised if asked
    (``datamodules.posed_faces.equalize_luminance``): uint8 (3, height, width).

    Raises:
        FormatError: The file does not decode, or the box falls outside the image.
    """
    crop = render_view(read_rgb(path), box, view, path)
    return equalize_luminance(crop) if hist_eq else crop
