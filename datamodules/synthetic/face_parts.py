"""The parts of a synthetic face, each drawn by one function in its own place.

Every function takes a :class:`~datamodules.synthetic.face_paint.Painter` and the factors it needs;
shapes are built in head coordinates (see :mod:`datamodules.synthetic.face_geometry`), lifted onto
the head surface, rotated and projected. Body parts (neck, clothes, necklace, necktie) live in the
canonical frame and do not follow the head pose, so they stay in rows 189-217 (the accessories in
rows 198-217, below OLR's 178 x 178 crop).
"""

from __future__ import annotations

import numpy as np

from datamodules.synthetic.face_factors import Expression, Identity, Pose, Style
from datamodules.synthetic.face_geometry import (
    EYE_X,
    eye_centers,
    eye_visible,
    head_axes,
    head_points,
    mouth_curve,
    surface,
)
from datamodules.synthetic.face_paint import Painter, hsv

HAIR_RGB = {
    "black": (30, 26, 26),
    "blond": (226, 192, 112),
    "brown": (112, 70, 40),
    "gray": (178, 178, 182),
    "auburn": (168, 62, 30),
}
BEARD_RGB = {
    "black": (30, 25, 25),
    "blond": (118, 88, 44),
    "brown": (58, 37, 24),
    "gray": (92, 92, 96),
    "auburn": (94, 36, 20),
    "none": (50, 40, 34),
}
_DARK = np.array([45.0, 32.0, 30.0])


def hair_rgb(identity: Identity) -> np.ndarray:
    return np.clip(np.array(HAIR_RGB[identity.hair_color], float) * identity.hair_shade, 0, 255)


def beard_rgb(identity: Identity) -> np.ndarray:
    return np.array(BEARD_RGB["none" if identity.bald else identity.hair_color], float)


def _head(p: Painter, identity: Identity, xy, lift: float = 0.0) -> np.ndarray:
    """Head-plane points (N, 2) -> output pixels, lifted onto the face surface."""
    return p.camera.head(surface(identity, np.asarray(xy, float).reshape(-1, 2), lift))


def hair_back(p: Painter, identity: Identity, style: Style) -> None:
    """Hair behind the head: a short rim for men, shoulder-length hair for women."""
    if identity.bald:
        return
    points = head_points(identity, 1.09)
    if identity.male:
        p.convex(p.camera.head(points[points[:, 1] < 6]), hair_rgb(identity) * 0.8)
        return
    a = head_axes(identity)[0]
    fall = np.array(
        [
            [88.5 - 1.25 * a, 190.0],
            [88.5 + 1.25 * a, 190.0],
            [88.5 - 1.05 * a, 196.0],
            [88.5 + 1.05 * a, 196.0],
        ]
    )
    top = p.camera.head(points[points[:, 1] < 0])
    p.convex(np.concatenate([top, p.camera.canonical(fall)]), hair_rgb(identity) * 0.8)


def draw_body(p: Painter, identity: Identity, style: Style, skin: np.ndarray) -> None:
    """Neck, V-neck clothes, and the necklace / necktie in rows 198-217."""
    canon = p.camera.canonical
    p.poly(canon(np.array([[71.0, 140], [106, 140], [109, 206], [68, 206]])), skin * 0.86)
    clothes = [
        [0, 218],
        [0, 200],
        [25, 193],
        [66, 189],
        [88.5, 212],
        [111, 189],
        [153, 193],
        [178, 200],
        [178, 218],
    ]
    p.poly(canon(np.array(clothes, float)), hsv(style.clothes_hue, 0.5, 0.55))
    accent = hsv(style.accessory_hue, 0.75, 0.6)
    if style.necktie:
        p.poly(canon(np.array([[74.8, 198], [102.2, 198], [88.5, 212]])), (238, 238, 236))
        p.poly(canon(np.array([[84.5, 198], [92.5, 198], [91, 203.5], [86, 203.5]])), accent)
        p.poly(canon(np.array([[86, 203], [91, 203], [95, 216], [88.5, 218], [82, 216]])), accent)
    if style.necklace:
        xs = np.linspace(72.0, 105.0, 9)
        ys = 200.5 + 9.0 * (1 - ((xs - 88.5) / 16.5) ** 2)
        p.line(canon(np.column_stack([xs, ys])), (200, 165, 60), 0.8)
        for x, y in zip(xs, ys, strict=True):
            p.ellipse(canon(np.array([[x, y]]))[0], (1.7, 1.7), (236, 200, 80))


def draw_wrinkles(p: Painter, identity: Identity, skin: np.ndarray) -> None:
    """Age lines (not Young): forehead lines, nasolabial folds, crow's feet."""
    color = skin * 0.6
    xs = np.linspace(-15.0, 15.0, 7)
    for y in (-28.0, -23.0):
        p.line(_head(p, identity, np.column_stack([xs, y + 1.5 * (xs / 15) ** 2])), color, 1.3)
    for side in (-1, 1):
        fold = [[side * 10.0, 19.0], [side * 15.0, 28.0], [side * 19.0, 40.0]]
        p.line(_head(p, identity, fold), color, 1.3)
        outer = side * (EYE_X * identity.eye_spacing + 9.0)
        for dy in (-3.5, 0.0, 3.5):
            p.line(_head(p, identity, [[outer, dy * 0.4], [outer + side * 4.5, dy]]), color, 1.1)


def _eye_ellipse(p: Painter, identity: Identity, center: np.ndarray):
    """Projected centre, semi-axes (canonical px) and angle of one eye."""
    half = 7.0 * identity.eye_size
    ends = _head(p, identity, [[center[0] - half, 0.0], [center[0] + half, 0.0]], 1.0)
    mid = ends.mean(0)
    vec = (ends[1] - ends[0]) / (p.unit / 2)  # canonical px
    height = 3.8 * identity.eye_size * (0.3 if identity.narrow_eyes else 1.0)
    height *= max(0.4, np.cos(np.radians(p.pose.pitch)))
    return mid, float(np.hypot(*vec) / 2), height, float(np.degrees(np.arctan2(vec[1], vec[0])))


def draw_double_chin(p: Painter, identity: Identity, skin: np.ndarray) -> None:
    """Chubby: a crease under the chin and rounder cheeks."""
    xs = np.linspace(-15.0, 15.0, 7)
    crease = np.column_stack([xs, 55.0 * identity.face_aspect - 3.0 * (xs / 15) ** 2])
    p.line(_head(p, identity, crease), skin * 0.7, 1.4)
    for side in (-1, 1):
        p.ellipse(_head(p, identity, [[side * 30.0, 22.0]], 1.0)[0], (7.0, 5.0), skin * 0.93)


def draw_eyes(p: Painter, identity: Identity, expression: Expression, style: Style, skin) -> None:
    """Eye whites, irises, pupils and lids; eye shadow and liner for Heavy_Makeup."""
    iris = hsv(identity.iris_hue, 0.6, 0.5)
    shadow = hsv(0.78 + 0.12 * style.accessory_hue, 0.5, 0.62)
    for side, center in zip((-1, 1), eye_centers(identity), strict=True):
        if not eye_visible(side, p.pose):
            continue
        mid, half, height, angle = _eye_ellipse(p, identity, center)
        if style.heavy_makeup:
            top = _head(p, identity, [[center[0], -4.5]], 1.0)[0]
            p.ellipse(top, (max(half, 1) * 1.2, 5.0), shadow, angle)
        p.ellipse(mid, (half, height), (240, 236, 232), angle)
        r = 2.9 * identity.eye_size
        p.ellipse(mid, (min(r, half), min(r, height)), iris, angle)
        p.ellipse(mid, (min(1.3, half), min(1.3, height)), (18, 14, 14), angle)
        liner = 1.6 if style.heavy_makeup else 0.8
        p.ellipse(
            mid, (half, height), _DARK if not style.heavy_makeup else (10, 8, 8), angle, liner
        )


def draw_brows(p: Painter, identity: Identity, expression: Expression) -> None:
    """Brows above the eyes; arousal beyond +-0.15 raises or lowers them, men's are thicker."""
    color = beard_rgb(identity) * 0.9
    a = expression.arousal
    lift = 2.4 * np.sign(a) * max(abs(a) - 0.15, 0.0) / 0.85
    offsets = np.array([-8.0, -3.0, 2.5, 8.0])
    arch = np.array([0.6, -0.7, -1.0, 0.4])
    for side in (-1, 1):
        xs = side * (EYE_X * identity.eye_spacing + offsets)
        ys = -12.0 - lift + arch
        p.line(
            _head(p, identity, np.column_stack([xs, ys]), 1.5), color, 2.8 if identity.male else 1.8
        )


def draw_nose(p: Painter, identity: Identity, skin: np.ndarray) -> None:
    """Nose shading, side line, wings and nostrils; Big_Nose makes it longer and wider."""
    nl = identity.nose_length * (1.3 if identity.big_nose else 1.0)
    nw = identity.nose_width * (1.6 if identity.big_nose else 1.0)
    shape = np.array(
        [
            [-2.2, -4],
            [-3, 12 * nl],
            [-7 * nw, 22 * nl],
            [-3.5 * nw, 26.5 * nl],
            [0, 27 * nl],
            [3.5 * nw, 26.5 * nl],
            [7 * nw, 22 * nl],
            [3, 12 * nl],
            [2.2, -4],
        ]
    )
    points = surface(identity, shape)
    points[:, 2] += np.array([2.0, 6, 3, 5, 8, 5, 3, 6, 2])  # the nose stands out of the face
    pts = p.camera.head(points)
    p.poly(pts, skin * (0.8 if identity.big_nose else 0.9))
    line = skin * (0.5 if identity.big_nose else 0.72)
    wing = 1.6 if identity.big_nose else 1.0
    p.line(_head(p, identity, [[2.6, -2], [3.4, 17 * nl]], 4.0), skin * 0.8, 0.9)
    for side in (-1, 1):
        curve = [
            [side * 6.5 * nw, 19 * nl],
            [side * 7.6 * nw, 23 * nl],
            [side * 4.2 * nw, 26.8 * nl],
        ]
        p.line(_head(p, identity, curve, 3.0), line, wing)
        nostril = _head(p, identity, [[side * 3.4 * nw, 25.2 * nl]], 5.0)[0]
        p.ellipse(nostril, (2.0 * np.sqrt(nw), 1.2), skin * 0.42, p.pose_roll)


def draw_mouth(p: Painter, identity: Identity, expression: Expression, style: Style, skin) -> None:
    """Lips (lipstick colour), open mouth with teeth when smiling, then mustache and goatee."""
    c = {k: _head(p, identity, v, 1.0) for k, v in mouth_curve(identity, expression).items()}
    lip = hsv(0.975, 0.85, 0.78) if style.lipstick else 0.4 * skin + 0.6 * np.array([165, 62, 70])
    if expression.mouth_open or expression.smiling:
        p.poly(np.concatenate([c["upper"], c["lower"][::-1]]), (72, 22, 28))
    if expression.smiling:  # teeth: the whole gap of a closed smile, the top of an open one
        share = 0.45 if expression.mouth_open else 1.0
        teeth = c["upper"] + (c["lower"] - c["upper"]) * share
        p.poly(np.concatenate([c["upper"][1:-1], teeth[-2:0:-1]]), (238, 234, 226))
    p.poly(np.concatenate([c["upper_outer"], c["upper"][::-1]]), lip)
    p.poly(np.concatenate([c["lower"], c["lower_outer"][::-1]]), lip)
    if not (expression.mouth_open or expression.smiling):
        p.line(c["mid"], lip * 0.5, 0.9)
    if identity.mustache:
        _mustache(p, identity, expression)
    if identity.goatee:
        _goatee(p, identity, expression)


def _mustache(p: Painter, identity: Identity, expression: Expression) -> None:
    curve = mouth_curve(identity, expression, n=7)["upper_outer"]
    half = np.abs(curve[0, 0]) + 2.0
    t = np.linspace(-1, 1, 7)
    top = np.column_stack([t * half * 0.9, 29.5 + 1.5 * np.abs(t)])
    bottom = curve[::-1] + np.array([0.0, -0.2])
    bottom[[0, -1], 1] += 3.5
    bottom[[0, -1], 0] += np.array([2.0, -2.0])
    p.poly(_head(p, identity, np.concatenate([top, bottom]), 2.0), beard_rgb(identity))


def _goatee(p: Painter, identity: Identity, expression: Expression) -> None:
    y = mouth_curve(identity, expression, n=7)["lower_outer"][3, 1] + 1.0
    chin = 57.0 * identity.face_aspect
    shape = [[-11.0, y], [11.0, y], [10.0, chin - 3], [0.0, chin + 1], [-10.0, chin - 3]]
    p.poly(_head(p, identity, shape, 1.5), beard_rgb(identity))


def hair_front(p: Painter, identity: Identity) -> None:
    """Hair cap above the hairline, temple locks, and the Bangs fringe."""
    if identity.bald:
        return
    color = hair_rgb(identity)
    points = head_points(identity, 1.05)
    hairline = -33.0 * identity.face_aspect
    p.convex(p.camera.head(points[points[:, 1] < hairline]), color)
    a = head_axes(identity)[0]
    bottom = -16.0 if identity.male else -4.0
    for side in (-1, 1):
        keep = (
            (points[:, 1] < bottom)
            & (side * points[:, 0] > 0.8 * a)
            & (np.abs(points[:, 2] + 1) < 11)
        )
        keep &= p.camera.depth(points) > 0
        if keep.sum() >= 3:
            p.convex(p.camera.head(points[keep]), color)
    if identity.bangs:
        xs = np.linspace(-0.8 * a, 0.8 * a, 11)
        top = np.column_stack([xs, np.full_like(xs, hairline - 3)])
        bottom_y = -16.5 + 2.5 * (np.arange(11) % 2)
        fringe = np.concatenate([top, np.column_stack([xs, bottom_y])[::-1]])
        p.poly(_head(p, identity, fringe, 2.5), color)


def draw_hat(p: Painter, identity: Identity, style: Style) -> None:
    """Crown over the top of the head and a brim band around it."""
    color = hsv(style.accessory_hue + 0.5, 0.65, 0.5)
    points = head_points(identity, 1.13)
    p.convex(p.camera.head(points[points[:, 1] < -26]), color)
    a, _, c = head_axes(identity)
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = [
        np.column_stack([1.32 * a * np.cos(t), np.full_like(t, y), 1.32 * c * np.sin(t)])
        for y in (-29.0, -23.0)
    ]
    p.convex(p.camera.head(np.concatenate(ring)), color * 0.7)


def draw_eyeglasses(p: Painter, identity: Identity, pose: Pose, style: Style) -> None:
    """Dark frames around both eyes, a bridge and the near temple arms."""
    color = hsv(style.accessory_hue, 0.4, 0.18)
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    centers = eye_centers(identity)
    z = centers[:, 2].max() + 6.0
    for side, c in zip((-1, 1), centers, strict=True):
        ring = np.column_stack([c[0] + 10.5 * np.cos(t), 0.5 + 7.5 * np.sin(t), np.full_like(t, z)])
        p.line(p.camera.head(ring), color, 1.8, closed=True)
        if side * pose.yaw < 15:
            a = head_axes(identity)[0]
            arm = np.array([[c[0] + side * 10.5, -1.0, z], [side * a * 0.97, 1.0, -2.0]])
            p.line(p.camera.head(arm), color, 1.5)
    bridge = np.array(
        [[centers[0, 0] + 10.5, -1.5, z], [0, -3.5, z + 4], [centers[1, 0] - 10.5, -1.5, z]]
    )
    p.line(p.camera.head(bridge), color, 1.6)
