"""Face views: exact mirrors and shifts, a blob lands where the hand-worked geometry says, PIL's
rotate agrees, the pose of a view matches the pose fitted to the moved landmarks, random views stay
in their bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from datamodules.face_views import FaceView, draw_view, render_view
from datamodules.formats.errors import FormatError
from datamodules.head_pose import pose_from_landmarks

FACE128 = (45, 25, 128, 128)  # (top, left, height, width) in the 178 x 218 aligned image


def _random_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


def test_plain_views_shifts_and_mirrors_move_pixels_exactly():
    image = _random_image(40, 30)
    top, left, h, w = 10, 7, 20, 16
    box = (top, left, h, w)
    assert torch.equal(render_view(image, box, FaceView()), image[:, 10:30, 7:23])
    # dx = 3 right, dy = -2 up: output (u, v) shows image (left + u - 3, top + v + 2)
    assert torch.equal(render_view(image, box, FaceView(dx=3, dy=-2)), image[:, 12:32, 4:20])
    # mirror, then shift (2, 1): output (u, v) shows crop column w - 1 - (u - 2), row v - 1
    got = render_view(image, box, FaceView(flip=True, dx=2, dy=1)).numpy()
    img = image.numpy()
    for v in range(h):
        for u in range(w):
            expected = img[:, top + v - 1, left + (w - 1) - (u - 2)]
            assert (got[:, v, u] == expected).all(), (u, v)
    # no box: the whole image; past its border the edge pixel repeats
    whole = render_view(image, None, FaceView(dx=1))
    assert torch.equal(whole[:, :, 1:], image[:, :, :-1])
    assert torch.equal(whole[:, :, 0], image[:, :, 0])


def _blob(x0: float, y0: float) -> torch.Tensor:
    """A 178 x 218 image holding one Gaussian blob (sigma 2.5 px) at pixel (x0, y0)."""
    y, x = np.mgrid[0:218, 0:178].astype(np.float64)
    blob = 250 * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 2.5**2))
    return torch.from_numpy(np.repeat(blob[None], 3, 0)).round().to(torch.uint8)


def _centroid(image: torch.Tensor) -> tuple[float, float]:
    weight = image[0].double()
    y, x = torch.meshgrid(
        torch.arange(weight.shape[0]).double(),
        torch.arange(weight.shape[1]).double(),
        indexing="ij",
    )
    return float((weight * x).sum() / weight.sum()), float((weight * y).sum() / weight.sum())


def test_a_blob_lands_where_the_steps_put_it():
    view = FaceView(flip=True, dx=-3, dy=2, degrees=3.0)
    out = render_view(_blob(110.0, 100.0), FACE128, view)
    # Worked by hand: crop coordinates (110 - 25, 100 - 45) = (85, 55); mirrored (127 - 85, 55)
    # = (42, 55); offset from the centre (63.5, 63.5) is (-21.5, -8.5); clockwise by 3 deg
    # (cos 0.998630, sin 0.052336): x = 0.998630 * -21.5 - 0.052336 * -8.5 = -21.02556,
    # y = 0.052336 * -21.5 + 0.998630 * -8.5 = -9.61358, so (42.47444, 53.88642); shifted by
    # (-3, 2): (39.47444, 55.88642).
    x, y = _centroid(out)
    assert x == pytest.approx(39.47444, abs=0.05) and y == pytest.approx(55.88642, abs=0.05)


def _smooth_image() -> torch.Tensor:
    """178 x 218 with structure at every scale the views move (10-40 px waves), no aliasing."""
    y, x = np.mgrid[0:218, 0:178].astype(np.float64)
    channels = [
        128 + 60 * np.sin(x / 7.0 + 0.3 * c) + 50 * np.cos(y / 5.0 - x / 11.0 + c) for c in range(3)
    ]
    return torch.from_numpy(np.stack(channels)).round().clamp(0, 255).to(torch.uint8)


def _pil_view(image: torch.Tensor, box, view: FaceView) -> torch.Tensor:
    """An independent rendering: PIL mirror (the face128 box is centred: mirroring the whole
    image mirrors the box), PIL rotate (counter-clockwise angles, centre in PIL's continuous
    coordinates) with its post-rotation translate, then the crop."""
    top, left, h, w = box
    picture = Image.fromarray(image.permute(1, 2, 0).numpy())
    if view.flip:
        picture = ImageOps.mirror(picture)
    turned = picture.rotate(
        -view.degrees,
        resample=Image.Resampling.BILINEAR,
        center=(left + w / 2, top + h / 2),
        translate=(view.dx, view.dy),
    )
    return torch.from_numpy(np.asarray(turned.crop((left, top, left + w, top + h))).copy()).permute(
        2, 0, 1
    )


@pytest.mark.parametrize(
    "view",
    [FaceView(degrees=3.0), FaceView(flip=True, dx=4, dy=-3, degrees=-2.5), FaceView(dx=-4)],
)
def test_agrees_with_pil(view):
    image = _smooth_image()
    ours = render_view(image, FACE128, view).int()
    pil = _pil_view(image, FACE128, view).int()
    assert (ours - pil).abs().float().mean() < 1.0
    if view.degrees:  # the other sense of rotation is far off
        other = FaceView(view.flip, view.dx, view.dy, -view.degrees)
        assert (_pil_view(image, FACE128, other).int() - ours).abs().float().mean() > 10


def test_pose_of_a_view_is_the_pose_of_its_moved_landmarks():
    g = torch.Generator().manual_seed(1)
    mean = torch.tensor([69, 111, 108, 111, 89, 135, 73, 152, 105, 152], dtype=torch.float64)
    landmarks = mean + 3 * torch.randn(16, 10, generator=g, dtype=torch.float64)
    top, left, h, w = FACE128
    for k in range(16):
        view = draw_view(generator=g)
        points = landmarks[k].view(5, 2) - torch.tensor([left, top], dtype=torch.float64)
        if view.flip:  # mirror the columns, and the image-left eye / mouth corner swap roles
            points = torch.stack([(w - 1) - points[:, 0], points[:, 1]], 1)[[1, 0, 2, 4, 3]]
        t = math.radians(view.degrees)
        c = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
        turn = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]).double()
        moved = (points - c) @ turn.T + c + torch.tensor([view.dx, view.dy]).double()
        expected = pose_from_landmarks(moved[None])[0]
        got = view.pose(pose_from_landmarks(landmarks[k : k + 1])[0])
        torch.testing.assert_close(got, expected)
    # the rule itself, by hand: mirrored, yaw and roll change sign; +2 degrees adds to roll
    pose = torch.tensor([0.1, 0.2, 0.3])
    torch.testing.assert_close(
        FaceView(flip=True, degrees=2.0).pose(pose),
        torch.tensor([-0.1, 0.2, -0.3 + math.radians(2.0)]),
    )
    assert torch.equal(FaceView(dx=3, dy=-1).pose(pose), pose)


def test_random_views_stay_in_bounds_and_follow_the_generator():
    g = torch.Generator().manual_seed(0)
    views = [draw_view(4, 3.0, 0.5, generator=g) for _ in range(600)]
    shifts = [v.dx for v in views] + [v.dy for v in views]
    assert set(shifts) == set(range(-4, 5))
    degrees = torch.tensor([v.degrees for v in views])
    assert degrees.abs().max() <= 3.0 and degrees.min() < -2.5 and degrees.max() > 2.5
    assert 0.4 < sum(v.flip for v in views) / 600 < 0.6
    again = torch.Generator().manual_seed(0)
    assert [draw_view(4, 3.0, 0.5, generator=again) for _ in range(600)] == views
    record = FaceView(True, -2, 3, 1.5).as_tensor()
    assert record.tolist() == [1.0, -2.0, 3.0, 1.5]
    assert draw_view(0, 0.0, 0.0, generator=g) == FaceView()


def test_bad_arguments_and_boxes_outside_the_image():
    with pytest.raises(ValueError, match="max_shift must be a non-negative int, got -1"):
        draw_view(-1)
    with pytest.raises(ValueError, match="max_degrees must be >= 0, got -2"):
        draw_view(4, -2.0)
    with pytest.raises(ValueError, match=r"flip_probability must be in \[0, 1\], got 1.5"):
        draw_view(4, 3.0, 1.5)
    with pytest.raises(FormatError, match="a.jpg: crop box 128x128 at"):
        render_view(_random_image(100, 100), FACE128, FaceView(dx=1), "a.jpg")
