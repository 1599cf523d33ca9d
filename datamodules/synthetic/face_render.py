"""The procedural face renderer shared by every face method (a pure function of the factors).

Drawing happens with OpenCV on a canvas at twice the output size (fixed-point coordinates with two
fractional bits), which is then area-downsampled for anti-aliasing. Lighting, exposure and blur act
on the downsampled image; the detail code is added last, in integers, so every 4 x 4 tile of it
sums to exactly zero (see :class:`~datamodules.synthetic.face_factors.DetailCode`). Painter's order:
background, back hair, body and neck accessories, ears, head, features, front hair, hat, glasses.
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.synthetic.face_factors import (
    CROP_ORIGIN,
    DETAIL_REGIONS,
    DetailCode,
    Expression,
    Identity,
    Pose,
    Style,
)
from datamodules.synthetic.face_geometry import (
    FRAME,
    HEAD_CENTER,
    Camera,
    head_axes,
    head_points,
    make_camera,
    surface,
)
from datamodules.synthetic.face_paint import Painter, hsv
from datamodules.synthetic.face_parts import (
    draw_body,
    draw_brows,
    draw_double_chin,
    draw_eyeglasses,
    draw_eyes,
    draw_hat,
    draw_mouth,
    draw_nose,
    draw_wrinkles,
    hair_back,
    hair_front,
)

SUPERSAMPLE = 2


def skin_color(identity: Identity) -> np.ndarray:
    """RGB skin colour: a light-to-dark scale, or a pale, desaturated tone for Pale_Skin."""
    if identity.pale_skin:
        return np.array([246.0, 230.0, 221.0])
    light, dark = np.array([218.0, 172.0, 138.0]), np.array([128.0, 86.0, 60.0])
    return light + (dark - light) * float(np.clip(identity.skin_tone, 0, 1))


def _background(style: Style, size: tuple[int, int]) -> np.ndarray:
    """Two-colour linear gradient at twice the output size (uint8, H x W x 3)."""
    width, height = size
    c1 = hsv(style.bg_hue, 0.35, 0.78)
    c2 = hsv((style.bg_hue + 0.1) % 1.0, 0.5, 0.78 * (1 - 0.5 * style.bg_strength))
    ys, xs = np.mgrid[-1:1:9j, -1:1:9j]
    t = (xs * np.cos(style.bg_angle) + ys * np.sin(style.bg_angle)) * 0.5 + 0.5
    small = c1 + (c2 - c1) * np.minimum(t[..., None] * style.bg_strength * 2, 1)
    small = np.round(small).astype(np.uint8)
    return cv2.resize(small, (width * SUPERSAMPLE, height * SUPERSAMPLE))


def _draw_head(p: Painter, identity: Identity, skin: np.ndarray) -> None:
    """Ears, then the head silhouette (convex hull of the jaw-deformed ellipsoid)."""
    a = head_axes(identity)[0]
    for side in (-1, 1):
        ear = np.array([[side * a * 0.98, 6.0, -4.0]])
        p.ellipse(p.camera.head(ear)[0], (6.5, 11.0), skin * 0.9, p.pose_roll)
    p.convex(p.camera.head(head_points(identity)), skin)


def _draw_face(p: Painter, identity: Identity, expression: Expression, style: Style, skin) -> None:
    """Features in front of the face, from the eyes down to the beard."""
    if not identity.young:
        draw_wrinkles(p, identity, skin)
    if identity.chubby:
        draw_double_chin(p, identity, skin)
    draw_eyes(p, identity, expression, style, skin)
    draw_brows(p, identity, expression)
    draw_nose(p, identity, skin)
    draw_mouth(p, identity, expression, style, skin)


def render(
    identity: Identity,
    pose: Pose,
    expression: Expression,
    style: Style,
    detail: DetailCode | None = None,
    size: tuple[int, int] = FRAME,
    framing: float = 1.0,
) -> np.ndarray:
    """Render one face.

    Args:
        identity: the person's traits.
        pose: head rotation and camera nuisances (shift, scale, exposure, blur).
        expression: valence and arousal.
        style: clip-level background, lighting, clothes and accessories.
        detail: fine detail code; ``None`` uses ``identity.detail`` (pass another to mix).
        size: output (width, height); (178, 218) is the CelebA frame.
        framing: zoom on the face; 1.3 mimics FFHQ's tighter crop.

    Returns:
        uint8 array (height, width, 3), RGB.
    """
    camera = make_camera(pose, size, framing)
    canvas = _background(style, size)
    p = Painter(canvas, camera, SUPERSAMPLE, pose)
    skin = skin_color(identity)
    hair_back(p, identity, style)
    draw_body(p, identity, style, skin)
    _draw_head(p, identity, skin)
    _draw_face(p, identity, expression, style, skin)
    hair_front(p, identity)
    if style.hat:
        draw_hat(p, identity, style)
    if style.eyeglasses:
        draw_eyeglasses(p, identity, pose, style)
    image = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
    image = _light(image, pose, style, camera)
    return _add_detail(image, identity, pose, detail or identity.detail, camera)


def _light(image: np.ndarray, pose: Pose, style: Style, camera: Camera) -> np.ndarray:
    """Directional light (linear gain field), exposure and optional blur; returns uint8."""
    height, width = image.shape[:2]
    radius = 110.0 * camera.zoom
    ys = (np.arange(height, dtype=np.float32) - camera.out_center[1]) / radius
    xs = (np.arange(width, dtype=np.float32) - camera.out_center[0]) / radius
    gain = 1 + style.light_strength * (
        np.cos(style.light_angle) * xs[None, :] + np.sin(style.light_angle) * ys[:, None]
    )
    gain = (gain * pose.exposure).astype(np.float32)
    out = cv2.multiply(image.astype(np.float32), cv2.merge([gain, gain, gain]))
    if pose.blurry:
        out = cv2.GaussianBlur(out, (0, 0), 2.0 * camera.zoom)
    return cv2.convertScaleAbs(out)


def detail_boxes(identity: Identity, camera: Camera) -> list[tuple[int, int, int] | None]:
    """Per detail region: (x0, y0, m) output position and pattern pixel size, or None.

    At zoom 1 the regions move with the head only in steps of 4 px, so the pattern stays on the
    4 x 4 grid of the 128 crop at (25, 45). A region whose surface turns more than about 65 deg
    away from the camera (strong yaw or pitch) is left out (None).
    """
    boxes: list[tuple[int, int, int] | None] = []
    m = max(1, int(round(camera.zoom)))
    for x0, y0, w, h in DETAIL_REGIONS:
        center = np.array([CROP_ORIGIN[0] + x0 + w / 2, CROP_ORIGIN[1] + y0 + h / 2])
        point = surface(identity, (center - HEAD_CENTER)[None])
        normal = point[0] / head_axes(identity) ** 2
        if camera.rot[2] @ normal < 0.42 * np.linalg.norm(normal):
            boxes.append(None)
            continue
        moved = camera.head(point)[0]
        shift = np.round((moved - camera.canonical(center[None])[0]) / (4 * m)) * 4 * m
        origin = camera.canonical(np.array([[CROP_ORIGIN[0] + x0, CROP_ORIGIN[1] + y0]]))[0]
        boxes.append((int(round(origin[0] + shift[0])), int(round(origin[1] + shift[1])), m))
    return boxes


def _add_detail(
    image: np.ndarray, identity: Identity, pose: Pose, detail: DetailCode, camera: Camera
) -> np.ndarray:
    """Add the +-1 patterns; per 4 x 4 tile and channel the amplitude shrinks to avoid clipping."""
    if detail.amplitude <= 0:
        return image
    _, _, direction = detail.code
    peak = np.round(detail.amplitude * 255 * np.abs(direction)).astype(np.int16)
    out = image.astype(np.int16)
    height, width = image.shape[:2]
    for region, box in enumerate(detail_boxes(identity, camera)):
        if box is None:
            continue
        (x, y, m), (_, _, w, h) = box, DETAIL_REGIONS[region]
        w, h = w * m, h * m
        if x < 0 or y < 0 or x + w > width or y + h > height:
            continue
        tile = 4 * m
        base = out[y : y + h, x : x + w].reshape(h // tile, tile, w // tile, tile, 3)
        room = np.minimum(base.min((1, 3)), 255 - base.max((1, 3)))
        amp = np.minimum(room, peak)[:, None, :, None, :] * np.sign(direction).astype(np.int16)
        pattern = detail.pattern(region, h // m, w // m)
        pattern = np.kron(pattern, np.ones((m, m), np.int16)).reshape(
            h // tile, tile, w // tile, tile
        )
        out[y : y + h, x : x + w] = (base + amp * pattern[..., None]).reshape(h, w, 3)
    return out.astype(np.uint8)
