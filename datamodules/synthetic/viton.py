"""``viton_synth``: a VITON twin in the exact CP-VTON on-disk layout (UST spec, section 9).

``make_viton_synth(root, n_train, n_test, H, W, seed)`` writes, for pair ids 1 .. n_train (train)
and n_train + 1 .. n_train + n_test (test)::

    <split>/cloth/XXXXXX_1.jpg          catalog item (domain B) on white
    <split>/cloth-mask/XXXXXX_1.jpg     its silhouette S0, 0 / 255 JPEG
    <split>/image/XXXXXX_0.jpg          a person (domain A) wearing item XXXXXX
    <split>/image-parse/XXXXXX_0.png    LIP labels: 0 background, 2 hair, 5 visible shirt,
                                        9 pants, 13 face and neck, 14 / 15 left / right arm
    <split>/pose/XXXXXX_0_keypoints.json   OpenPose-18 (``pose_keypoints``) from the pose
    train_pairs.txt  test_pairs.txt     person i with its own item i, as in VITON
    test_cross_pairs.txt                person i with another test item j
    test/cross/XXXXXX_0__YYYYYY_1.jpg   the true try-on: person i's pose and look wearing item j
    test/cross-parse/XXXXXX_0__YYYYYY_1.png   its parse
    viton_synth.json                    sidecar: every item's and person's factors, the planted
                                        duplicates, the generator's fingerprint

Items: white background, a canonical shirt silhouette S0 (torso with shoulder bevels and a
neckline notch, two sleeve quads, short or long, width x 0.95-1.05), filled with a pattern in the
item's canonical frame (solid, h-stripes, v-stripes, checker, dots, diagonal chevrons) in two
palette colours (no mid-gray, the context fill; no white), period W/12, W/8 or W/6, optionally a
centred logo square. Silhouette and pattern are left-right mirror symmetric, pixel for pixel.

Persons: a non-white gradient background, pants, neck, arms, the shirt, hair and face. The pose
is a global affine (translation +-8 %, scale 0.75-0.95, rotation +-8 deg, shear +-0.1) about the
image centre, each sleeve with its arm rotated +-15 deg about its shoulder joint first, then a
drape x += a sin(2 pi y / lambda + phi) (a <= 1 % of W); shading x (1 - 0.1 noise) on the shirt;
with p = 0.2 one forearm crosses the torso in front of the shirt. Shirt pixels are the item's
pattern sampled (``grid_sample``) at the known inverse map, so each has an exact catalog
correspondence (``render_person(...)["correspondence"]``). Parse label 5 is the warped S0 minus
what lies in front of it (hair, face, the crossing forearm).

Planted duplicates (for the cleaning of ``datamodules.viton_cleaning``): a few pairs wear a copy
of an earlier item, byte-identical ("exact") or one grey level brighter ("near"),
within train, from test onto train, and within test; listed in the sidecar. Everything depends on
``seed`` only: item k and person k draw from ``numpy.random.default_rng([seed, k, part])``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.formats.viton import (
    CROSS_DIR,
    CROSS_PAIRS,
    CROSS_PARSE_DIR,
    MASK_THRESHOLD,
    TWIN_SIDECAR,
    write_jpeg,
    write_pairs,
    write_parse,
    write_pose,
)

SIDECAR = TWIN_SIDECAR
_PLAN = 2**31  # the rng index of the twin-wide draws (duplicates, cross pairs)
QUALITY = 95
REF_W, REF_H = 192.0, 256.0  # geometry is defined on a 256 x 192 canvas, scaled to (H, W)
CX, CY = REF_W / 2, REF_H / 2
# fmt: off
PALETTE = np.array([
    (200, 30, 40), (240, 130, 20), (240, 210, 40), (40, 150, 60), (20, 140, 140),
    (30, 70, 180), (20, 30, 90), (120, 50, 150), (230, 110, 160), (110, 60, 30),
    (25, 25, 25), (120, 180, 230), (120, 130, 30), (120, 20, 40),
], dtype=np.uint8)
SKINS = ((236, 188, 160), (210, 160, 120), (170, 120, 80), (120, 80, 55), (90, 60, 40))
HAIRS = ((30, 25, 20), (80, 50, 30), (160, 120, 60), (60, 60, 60), (120, 40, 20))
PANTS = ((30, 40, 70), (20, 20, 25), (70, 50, 35), (50, 60, 50), (90, 90, 110))
# fmt: on
PATTERNS = ("solid", "h-stripes", "v-stripes", "checker", "dots", "diagonal")
PERIODS = (1 / 12, 1 / 8, 1 / 6)  # of W
SLEEVES = {"short": (55.0, 34.0), "long": (68.0, 80.0)}  # angle below horizontal, length
ARM_ANGLE, ARM_LENGTH, ARM_RADIUS, ELBOW = 70.0, 115.0, 9.0, 60.0
TOP, BOTTOM = 48.0, 236.0  # torso rows on the reference canvas
LEFT_ARM, RIGHT_ARM = 14, 15  # LIP: the person's left arm is on the image's right (x > CX)
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_train": 400, "n_test": 48, "height": 64, "width": 48},  # tests, CPU runs
    "small": {"n_train": 1000, "n_test": 100, "height": 64, "width": 48},
    "default": {"n_train": 1000, "n_test": 100, "height": 256, "width": 192},  # the spec's
}


@dataclass(frozen=True)
class Item:
    """A catalog item's factors (palette indices; ``period`` as a fraction of W)."""

    pattern: str
    color1: int
    color2: int
    period: float
    sleeve: str
    width: float
    logo: int | None

    def signature(self) -> tuple:
        """What must differ between two items for them to differ by more than the cleaning's
        near rule: pattern, colours, period and sleeves (a solid has no second colour or period;
        width and logo alone are too small a difference)."""
        solid = self.pattern == "solid"
        return (
            self.pattern,
            self.color1,
            None if solid else self.color2,
            None if solid else self.period,
            self.sleeve,
        )


@dataclass(frozen=True)
class Person:
    """A person's pose (reference-canvas units, degrees) and look."""

    tx: float
    ty: float
    scale: float
    rotation: float
    shear: float
    arm_left: float  # the person's left arm (image right), degrees about its shoulder joint
    arm_right: float
    drape_amplitude: float
    drape_period: float
    drape_phase: float
    occluder: int | None  # LIP arm label of the forearm crossing the torso, or None
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    gradient_angle: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    pants: tuple[int, int, int]
    shading_seed: int


def sample_item(rng: np.random.Generator) -> Item:
    """Draw an item's factors."""
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    c1, c2, c3 = (int(c) for c in rng.choice(len(PALETTE), 3, replace=False))
    return Item(
        pattern=pattern,
        color1=c1,
        color2=c2,
        period=float(PERIODS[int(rng.integers(len(PERIODS)))]),
        sleeve=("short", "long")[int(rng.integers(2))],
        width=float(rng.uniform(0.95, 1.05)),
        logo=c3 if rng.random() < 0.3 else None,
    )


def sample_person(rng: np.random.Generator) -> Person:
    """Draw a person's pose and look."""
    u = rng.uniform
    occluder = (LEFT_ARM, RIGHT_ARM)[int(rng.integers(2))] if rng.random() < 0.2 else None
    background = tuple(tuple(int(v) for v in rng.integers(30, 201, 3)) for _ in range(2))
    return Person(
        tx=float(u(-0.08, 0.08) * REF_W),
        ty=float(u(-0.08, 0.08) * REF_H),
        scale=float(u(0.75, 0.95)),
        rotation=float(u(-8, 8)),
        shear=float(u(-0.1, 0.1)),
        arm_left=float(u(-15, 15)),
        arm_right=float(u(-15, 15)),
        drape_amplitude=float(u(0, 0.01) * REF_W),
        drape_period=float(u(0.3, 0.6) * REF_H),
        drape_phase=float(u(0, 2 * math.pi)),
        occluder=occluder,
        background=background,
        gradient_angle=float(u(0, 2 * math.pi)),
        skin=SKINS[int(rng.integers(len(SKINS)))],
        hair=HAIRS[int(rng.integers(len(HAIRS)))],
        pants=PANTS[int(rng.integers(len(PANTS)))],
        shading_seed=int(rng.integers(2**31)),
    )


# --------------------------------------------------------------------------------------------------
# Geometry on the reference canvas. Shapes are defined on the image's right half (x >= CX); the
# left half is their mirror image, so every item is mirror symmetric.
# --------------------------------------------------------------------------------------------------


def _convex(x: np.ndarray, y: np.ndarray, corners: list[tuple[float, float]]) -> np.ndarray:
    """Inside a convex polygon (corners in either winding)."""
    signs = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):
        signs.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0))
    signs = np.stack(signs)
    return (signs >= 0).all(0) | (signs <= 0).all(0)


def _ellipse(x, y, cx, cy, rx, ry) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def _capsule(x, y, a, b, radius) -> np.ndarray:
    """Within ``radius`` of the segment a-b."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0, 1)
    return (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2 <= radius**2


def _direction(degrees: float) -> tuple[float, float]:
    """Unit vector pointing right and down at ``degrees`` below the horizontal."""
    a = math.radians(degrees)
    return math.cos(a), math.sin(a)


def _half_width(item: Item) -> float:
    return 50.0 * item.width


def joint(item: Item) -> tuple[float, float]:
    """The right shoulder joint (image right), pivot of that sleeve and arm."""
    return CX + _half_width(item) - 4, TOP + 22


def _torso(item: Item, x, y) -> np.ndarray:
    """The torso of S0 (both halves) without the sleeves, neckline notch cut out."""
    u, hw = np.abs(x - CX), _half_width(item)
    body = _convex(u, y, [(0, TOP), (hw - 14, TOP), (hw, TOP + 10), (hw, BOTTOM), (0, BOTTOM)])
    return body & ~_ellipse(u, y, 0, TOP, 18, 14)


def _sleeve(item: Item, x, y) -> np.ndarray:
    """The right sleeve quad (evaluate at mirrored x for the left one)."""
    angle, length = SLEEVES[item.sleeve]
    dx, dy = _direction(angle)
    hw = _half_width(item)
    top, bottom = (CX + hw - 6, TOP + 3), (CX + hw, TOP + 46)
    corners = [
        top,
        (top[0] + length * dx, top[1] + length * dy),
        (bottom[0] + 0.8 * length * dx, bottom[1] + 0.8 * length * dy),
        bottom,
    ]
    return _convex(x, y, corners)


def silhouette(item: Item, x, y) -> np.ndarray:
    """S0 at canonical points (x, y): torso or either sleeve."""
    return _torso(item, x, y) | _sleeve(item, x, y) | _sleeve(item, 2 * CX - x, y)


def _arm(item: Item, x, y) -> np.ndarray:
    start = joint(item)
    dx, dy = _direction(ARM_ANGLE)
    return _capsule(
        x, y, start, (start[0] + ARM_LENGTH * dx, start[1] + ARM_LENGTH * dy), ARM_RADIUS
    )


def pattern_codes(item: Item, u, y) -> np.ndarray:
    """0 (colour 1), 1 (colour 2) or 2 (logo) at canonical points, ``u = |x - CX|``."""
    period = item.period * REF_W
    fu, fy = np.floor(u / period), np.floor(y / period)
    if item.pattern == "solid":
        code = np.zeros_like(u)
    elif item.pattern == "h-stripes":
        code = fy % 2
    elif item.pattern == "v-stripes":
        code = fu % 2
    elif item.pattern == "checker":
        code = (fu + fy) % 2
    elif item.pattern == "dots":
        code = ((u % period - period / 2) ** 2 + (y % period - period / 2) ** 2) < (period / 3) ** 2
    else:  # diagonal chevrons
        code = np.floor((u + y) / period) % 2
    code = code.astype(np.int64)
    if item.logo is not None:
        code[(u < 16) & (np.abs(y - 112) < 16)] = 2
    return code


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel centres on the reference canvas: x, y and the exactly symmetric ``|x - CX|``."""
    cols, rows = np.arange(width), np.arange(height)
    u = np.abs(2 * cols + 1 - width) * (CX / width)  # integer-exact mirror symmetry
    x = (cols + 0.5) * (REF_W / width)
    y = (rows + 0.5) * (REF_H / height)
    return (
        np.broadcast_to(x, (height, width)),
        np.broadcast_to(y[:, None], (height, width)),
        np.broadcast_to(u, (height, width)),
    )


def render_item(item: Item, height: int, width: int) -> dict[str, np.ndarray]:
    """The catalog image (uint8 H x W x 3 on white), S0 (bool H x W) and the pattern canvas
    (float32 H x W x 3, the fill everywhere, what persons sample)."""
    x, y, u = _pixel_grid(height, width)
    colours = np.stack(
        [
            PALETTE[item.color1],
            PALETTE[item.color2],
            PALETTE[item.logo if item.logo is not None else item.color1],
        ]
    )
    canvas = colours[pattern_codes(item, u, y)].astype(np.float32)
    mask = silhouette(item, CX + u, y)
    image = np.where(mask[..., None], canvas, 255).astype(np.uint8)
    return {"image": image, "mask": mask, "canvas": canvas}


def _rotate(x, y, centre, degrees):
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    dx, dy = x - centre[0], y - centre[1]
    return centre[0] + c * dx - s * dy, centre[1] + s * dx + c * dy


def _global_matrix(person: Person) -> np.ndarray:
    a = math.radians(person.rotation)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return rotation @ np.array([[1.0, person.shear], [0.0, 1.0]]) * person.scale


def forward_point(person: Person, item: Item, point, part: str) -> tuple[float, float]:
    """Where a canonical point of ``part`` (``torso``, ``left`` or ``right`` arm) lands in the
    person image (reference units): arm rotation, global affine, drape."""
    x, y = point
    if part != "torso":
        x, y = _rotate(x, y, _joint_of(item, part), _arm_angle(person, part))
    px, py = np.array([CX + person.tx, CY + person.ty]) + _global_matrix(person) @ (x - CX, y - CY)
    px += person.drape_amplitude * math.sin(
        2 * math.pi * py / person.drape_period + person.drape_phase
    )
    return float(px), float(py)


def _joint_of(item: Item, part: str) -> tuple[float, float]:
    jx, jy = joint(item)
    return (jx, jy) if part == "left" else (2 * CX - jx, jy)  # the person's left is image right


def _arm_angle(person: Person, part: str) -> float:
    return person.arm_left if part == "left" else person.arm_right


def inverse_maps(person: Person, item: Item, height: int, width: int) -> dict[str, tuple]:
    """Canonical coordinates of every person pixel under each part's map (torso, left, right)."""
    x, y, _ = _pixel_grid(height, width)
    x = x - person.drape_amplitude * np.sin(
        2 * np.pi * y / person.drape_period + person.drape_phase
    )
    inverse = np.linalg.inv(_global_matrix(person))
    dx, dy = x - CX - person.tx, y - CY - person.ty
    tx = CX + inverse[0, 0] * dx + inverse[0, 1] * dy
    ty = CY + inverse[1, 0] * dx + inverse[1, 1] * dy
    maps = {"torso": (tx, ty)}
    for part in ("left", "right"):
        maps[part] = _rotate(tx, ty, _joint_of(item, part), -_arm_angle(person, part))
    return maps


def person_layers(person: Person, item: Item, height: int, width: int) -> dict[str, np.ndarray]:
    """Every layer's mask (bool H x W), back to front, and the shirt's canonical coordinates.

    Keys: ``pants``, ``neck``, ``arm_left``, ``arm_right`` (behind the shirt), ``shirt`` (the
    warped S0: torso piece and both sleeves with their arms), ``hair``, ``face``, ``occluder`` (in
    front of it), and ``correspondence`` float32 (H, W, 2), the canonical (x, y) of each shirt
    pixel (NaN elsewhere).
    """
    maps = inverse_maps(person, item, height, width)
    tx, ty = maps["torso"]
    lx, ly = maps["left"]
    rx, ry = maps["right"]
    hw = _half_width(item)
    sleeve_left, sleeve_right = _sleeve(item, lx, ly), _sleeve(item, 2 * CX - rx, ry)
    torso = _torso(item, tx, ty)
    shirt = torso | sleeve_left | sleeve_right
    qx = np.where(sleeve_left, lx, np.where(sleeve_right, rx, tx))
    qy = np.where(sleeve_left, ly, np.where(sleeve_right, ry, ty))
    correspondence = np.where(shirt[..., None], np.stack([qx, qy], -1), np.nan)
    occluder = np.zeros_like(shirt)
    if person.occluder is not None:
        part = "left" if person.occluder == LEFT_ARM else "right"
        jx, jy = _joint_of(item, part)
        side = 1 if part == "left" else -1
        dx, dy = _direction(ARM_ANGLE)
        elbow = _rotate(jx + side * ELBOW * dx, jy + ELBOW * dy, (jx, jy), _arm_angle(person, part))
        occluder = _capsule(tx, ty, elbow, (CX - side * 18, 168.0), 7.0)
    return {
        "pants": _convex(
            tx, ty, [(CX - hw + 4, 200), (CX + hw - 4, 200), (CX + hw - 4, 400), (CX - hw + 4, 400)]
        ),
        "neck": (np.abs(tx - CX) < 9) & (ty > 34) & (ty < 64),
        "arm_left": _arm(item, lx, ly),
        "arm_right": _arm(item, 2 * CX - rx, ry),
        "shirt": shirt,
        "hair": _ellipse(tx, ty, CX, 24, 19, 19),
        "face": _ellipse(tx, ty, CX, 32, 15, 18),
        "occluder": occluder,
        "correspondence": correspondence.astype(np.float32),
    }


def _sample(canvas: np.ndarray, correspondence: np.ndarray) -> np.ndarray:
    """``grid_sample`` the item's canvas at canonical coordinates: float32 (H, W, 3)."""
    grid = np.stack(
        [correspondence[..., 0] / REF_W * 2 - 1, correspondence[..., 1] / REF_H * 2 - 1], -1
    )
    grid = torch.from_numpy(np.nan_to_num(grid, nan=-2.0)).float()[None]
    source = torch.from_numpy(canvas).permute(2, 0, 1)[None]
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def _smooth_noise(seed: int, height: int, width: int) -> np.ndarray:
    coarse = torch.from_numpy(np.random.default_rng(seed).random((1, 1, 4, 3))).float()
    return F.interpolate(coarse, (height, width), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


def render_person(
    person: Person, item: Item, height: int, width: int, canvas: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """A person wearing ``item``: ``image`` uint8 (H, W, 3), ``labels`` uint8 (H, W) LIP, and the
    layers of ``person_layers``. ``canvas``: the item's pattern canvas, if already rendered."""
    if canvas is None:
        canvas = render_item(item, height, width)["canvas"]
    layers = person_layers(person, item, height, width)
    x, y, _ = _pixel_grid(height, width)
    c, s = math.cos(person.gradient_angle), math.sin(person.gradient_angle)
    t = np.clip(0.5 + ((x - CX) * c + (y - CY) * s) / REF_H, 0, 1)[..., None]
    first, second = (np.array(v, dtype=np.float32) for v in person.background)
    image = (1 - t) * first + t * second
    labels = np.zeros((height, width), np.uint8)
    skin = np.array(person.skin, np.float32)
    shirt = _sample(canvas, layers["correspondence"])
    shirt *= (1 - 0.1 * _smooth_noise(person.shading_seed, height, width))[..., None]
    occluder_label = person.occluder or LEFT_ARM
    for name, label, colour in (
        ("pants", 9, np.array(person.pants, np.float32)),
        ("neck", 13, skin),
        ("arm_left", LEFT_ARM, skin),
        ("arm_right", RIGHT_ARM, skin),
        ("shirt", 5, shirt),
        ("hair", 2, np.array(person.hair, np.float32)),
        ("face", 13, skin),
        ("occluder", occluder_label, skin * 0.92),
    ):
        mask = layers[name]
        image = np.where(mask[..., None], colour, image)
        labels[mask] = label
    return {"image": np.clip(np.round(image), 0, 255).astype(np.uint8), "labels": labels, **layers}


# OpenPose-18 (COCO order): canonical point and the part that carries it. Image-left is the
# person's right.
def keypoints(person: Person, item: Item, height: int, width: int) -> np.ndarray:
    """float32 (18, 3) OpenPose keypoints ``x, y, confidence`` in pixels; (0, 0, 0) outside."""
    jx, jy = joint(item)
    dx, dy = _direction(ARM_ANGLE)
    hw = _half_width(item)

    def arm(side: int, distance: float) -> tuple[float, float]:
        return (CX + side * (jx - CX + distance * dx), jy + distance * dy)

    points = [
        ((CX, 34), "torso"),
        ((CX, TOP + 2), "torso"),
        (arm(-1, 0), "right"),
        (arm(-1, ELBOW), "right"),
        (arm(-1, ARM_LENGTH - 5), "right"),
        (arm(1, 0), "left"),
        (arm(1, ELBOW), "left"),
        (arm(1, ARM_LENGTH - 5), "left"),
        ((CX - hw / 2, 225), "torso"),
        ((CX - hw / 2, 330), "torso"),
        ((CX - hw / 2, 420), "torso"),
        ((CX + hw / 2, 225), "torso"),
        ((CX + hw / 2, 330), "torso"),
        ((CX + hw / 2, 420), "torso"),
        ((CX - 6, 28), "torso"),
        ((CX + 6, 28), "torso"),
        ((CX - 15, 32), "torso"),
        ((CX + 15, 32), "torso"),
    ]
    out = np.zeros((len(points), 3), np.float32)
    for k, (point, part) in enumerate(points):
        px, py = forward_point(person, item, point, part)
        px, py = px * width / REF_W, py * height / REF_H
        if 0 <= px < width and 0 <= py < height:
            out[k] = (px, py, 1.0)
    return out


# --------------------------------------------------------------------------------------------------
# Writing the twin
# --------------------------------------------------------------------------------------------------


def _rng(seed: int, index: int, part: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, part])


def _distinct_items(seed: int, count: int) -> list[Item]:
    """``count`` items with pairwise different signatures (no accidental duplicates)."""
    items, seen = [], set()
    for k in range(count):
        rng, item = _rng(seed, k, 0), None
        while item is None or item.signature() in seen:
            item = sample_item(rng)
        seen.add(item.signature())
        items.append(item)
    return items


def _plan_duplicates(n_train: int, n_test: int, rng) -> list[tuple[int, int, str]]:
    """Planted duplicates ``(index, source index, kind)``, 0-based over train then test; a
    duplicate comes after its source, so the cleaning keeps the source."""
    if n_train < 40 or n_test < 12:
        return []
    plan = []
    train = rng.permutation(np.arange(n_train // 2, n_train))[:6].tolist()
    sources = rng.permutation(n_train // 2)[:11].tolist()
    for k, index in enumerate(train):
        plan.append((index, sources[k], "exact" if k < 3 else "near"))
    test = (n_train + rng.permutation(np.arange(n_test // 2, n_test))[:4]).tolist()
    plan += [
        (test[0], sources[6], "exact"),
        (test[1], sources[7], "exact"),
        (test[2], sources[8], "near"),
        (test[3], n_train + int(rng.integers(n_test // 2)), "exact"),
    ]
    return plan


def _resolve_duplicates(plan, rendered: dict) -> dict[int, tuple[int, str]]:
    """``{index: (source, kind)}``; a near duplicate's source is the first planned candidate
    (or, failing it, any earlier original item) whose near copy meets the cleaning's near rule
    and differs in its pixels."""
    from datamodules.viton_cleaning import is_near_duplicate

    copies, used = {}, {source for _, source, _ in plan} | {index for index, _, _ in plan}
    for index, source, kind in plan:
        if kind == "near":
            candidates = [source] + [k for k in range(index) if k not in used]
            for source in candidates:
                original = _decode(_jpeg_bytes(rendered[source]["image"], QUALITY))
                copy = _decode(_near_copy(rendered[source]["image"]))
                if is_near_duplicate(original, copy) and (original != copy).any():
                    break
            else:
                raise RuntimeError(f"no item has a near copy for duplicate {index}")
            used.add(source)
        copies[index] = (source, kind)
    return copies


def _near_copy(image: np.ndarray) -> bytes:
    """A near duplicate's JPEG: the item one grey level brighter (white stays white)."""
    return _jpeg_bytes(np.clip(image.astype(np.int16) + 1, 0, 255).astype(np.uint8), QUALITY)


def _decode(data: bytes) -> np.ndarray:
    import io

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _name(index: int, suffix: int) -> str:
    return f"{index + 1:06d}_{suffix}.jpg"


def _jpeg_bytes(array: np.ndarray, quality: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def twin_fingerprint(n_train: int, n_test: int, height: int, width: int, seed: int) -> dict:
    """What a written twin depends on: sizes, seed and a hash of the generator and format code."""
    sources = [Path(__file__), Path(__file__).parents[1] / "formats" / "viton.py"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    return {
        "n_train": n_train,
        "n_test": n_test,
        "height": height,
        "width": width,
        "seed": seed,
        "generator_sha256": digest,
    }


def make_viton_synth(
    root: str | Path,
    n_train: int = 1000,
    n_test: int = 100,
    H: int = 256,
    W: int = 192,
    seed: int = 0,
    pose: bool = True,
    progress: bool = False,
) -> dict:
    """Write the twin under ``root`` (module docstring); return a summary (counts, seconds).

    ``n_train`` and ``n_test`` count the pairs written, planted duplicates included (with at
    least 40 train and 12 test pairs: 3 exact and 3 near within train, 2 exact and 1 near test
    items duplicating a train item, 1 exact within test).
    """
    start = time.perf_counter()
    root = Path(root)
    for split in ("train", "test"):
        for folder in ("image", "cloth", "cloth-mask", "image-parse", "pose"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
    for folder in (CROSS_DIR, CROSS_PARSE_DIR):
        (root / "test" / folder).mkdir(parents=True, exist_ok=True)
    total = n_train + n_test
    items = _distinct_items(seed, total)
    rendered = {k: render_item(items[k], H, W) for k in range(total)}
    copies = _resolve_duplicates(_plan_duplicates(n_train, n_test, _rng(seed, _PLAN, 3)), rendered)
    for index, (source, _) in copies.items():
        items[index], rendered[index] = items[source], rendered[source]
    cloth_bytes, duplicates = {}, []
    for index in range(total):
        source, kind = copies.get(index, (index, None))
        image = rendered[index]["image"]
        cloth_bytes[index] = _near_copy(image) if kind == "near" else _jpeg_bytes(image, QUALITY)
        if kind is not None:
            duplicates.append(
                {
                    "split": _split(index, n_train),
                    "cloth": _name(index, 1),
                    "person": _name(index, 0),
                    "kind": kind,
                    "source_split": _split(source, n_train),
                    "source_cloth": _name(source, 1),
                }
            )
    persons = [sample_person(_rng(seed, k, 1)) for k in range(total)]
    bar = _bar(progress, total)
    for index in range(total):
        split, art = _split(index, n_train), rendered[index]
        folder = root / split
        (folder / "cloth" / _name(index, 1)).write_bytes(cloth_bytes[index])
        write_jpeg(
            folder / "cloth-mask" / _name(index, 1), art["mask"].astype(np.uint8) * 255, QUALITY
        )
        person = render_person(persons[index], items[index], H, W, art["canvas"])
        write_jpeg(folder / "image" / _name(index, 0), person["image"], QUALITY)
        write_parse(folder / "image-parse" / f"{index + 1:06d}_0.png", person["labels"])
        if pose:
            points = keypoints(persons[index], items[index], H, W)
            write_pose(folder / "pose" / f"{index + 1:06d}_0_keypoints.json", points)
        bar(1)
    cross = _cross_pairs(items, n_train, n_test, _rng(seed, _PLAN, 4))
    for i, j in cross:
        person = render_person(persons[i], items[j], H, W, rendered[j]["canvas"])
        stem = f"{_name(i, 0)[:-4]}__{_name(j, 1)[:-4]}"
        write_jpeg(root / "test" / CROSS_DIR / f"{stem}.jpg", person["image"], QUALITY)
        write_parse(root / "test" / CROSS_PARSE_DIR / f"{stem}.png", person["labels"])
    write_pairs(root / "train_pairs.txt", [(_name(k, 0), _name(k, 1)) for k in range(n_train)])
    write_pairs(
        root / "test_pairs.txt", [(_name(k, 0), _name(k, 1)) for k in range(n_train, total)]
    )
    write_pairs(root / CROSS_PAIRS, [(_name(i, 0), _name(j, 1)) for i, j in cross])
    sidecar = {
        "fingerprint": twin_fingerprint(n_train, n_test, H, W, seed),
        "mask_threshold": MASK_THRESHOLD,
        "items": {_name(k, 1): asdict(items[k]) for k in range(total)},
        "persons": {_name(k, 0): asdict(persons[k]) for k in range(total)},
        "duplicates": duplicates,
        "cross_pairs": [[_name(i, 0), _name(j, 1)] for i, j in cross],
    }
    (root / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n")
    return {
        "root": str(root),
        "train": n_train,
        "test": n_test,
        "duplicates": len(duplicates),
        "cross_pairs": len(cross),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _split(index: int, n_train: int) -> str:
    return "train" if index < n_train else "test"


def _cross_pairs(items: list[Item], n_train: int, n_test: int, rng) -> list[tuple[int, int]]:
    """One other test item per test person (a seeded shift, skipping identical-looking items)."""
    test = list(range(n_train, n_train + n_test))
    if n_test < 2:
        return []
    shift = int(rng.integers(1, n_test))
    pairs = []
    for k, i in enumerate(test):
        for step in range(n_test - 1):
            j = test[(k + shift + step) % n_test]
            if j != i and items[j].signature() != items[i].signature():
                pairs.append((i, j))
                break
    return pairs


def _bar(enabled: bool, total: int):
    if not enabled:
        return lambda n: None
    from rich.progress import Progress

    progress = Progress(transient=False)
    progress.start()
    task = progress.add_task("viton_synth", total=total)

    def advance(n: int) -> None:
        progress.advance(task, n)
        if progress.finished:
            progress.stop()

    return advance


def read_sidecar(root: str | Path) -> dict:
    """The twin's sidecar, with items and persons as ``Item`` / ``Person``."""
    data = json.loads((Path(root) / SIDECAR).read_text())
    data["items"] = {k: Item(**v) for k, v in data["items"].items()}
    persons = {}
    for name, values in data["persons"].items():
        values["background"] = tuple(tuple(c) for c in values["background"])
        for key in ("skin", "hair", "pants"):
            values[key] = tuple(values[key])
        persons[name] = Person(**values)
    data["persons"] = persons
    return data


def ensure_twin(root: Path, preset: str, seed: int) -> None:
    """Write (and clean) the twin of ``preset`` at ``root`` unless an up-to-date one is there.

    Data without our sidecar is never touched; a twin written by another generator, preset or seed
    is rewritten, loudly. The clean pair lists are written when missing.
    """
    from datamodules.viton_cleaning import clean_viton

    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose from {sorted(PRESETS)}")
    sizes = PRESETS[preset]
    expected = twin_fingerprint(
        sizes["n_train"], sizes["n_test"], sizes["height"], sizes["width"], seed
    )
    sidecar, log = root / SIDECAR, logging.getLogger(__name__)
    if (root / "train_pairs.txt").exists() and not sidecar.exists():
        return  # real data (or someone else's): never written over
    current = sidecar.exists() and json.loads(sidecar.read_text())["fingerprint"] == expected
    if not current:
        if sidecar.exists():
            log.warning(
                "SYNTHETIC DATA: %s was written by another generator or preset: rewriting", root
            )
            for split in ("train", "test"):
                shutil.rmtree(root / split, ignore_errors=True)
        log.warning(
            "SYNTHETIC DATA: writing the VITON twin (preset %r, seed %d) to %s. These "
            "are rendered shirts and persons, not VITON.",
            preset,
            seed,
            root,
        )
        make_viton_synth(
            root, sizes["n_train"], sizes["n_test"], sizes["height"], sizes["width"], seed
        )
    if not current or not all((root / f"clean_{s}_pairs.txt").exists() for s in ("train", "test")):
        clean_viton(root, size=(sizes["height"], sizes["width"]), progress=False)
