"""Synthetic birds: a CUB-200-2011 twin with known localization structure (MinMaxCAM, Ch. 5).

Written in the real CUB_200_2011 layout (five tables + ``images/<class>/<name>.png``), plus the
wsolevaluation metadata (``metadata/CUB/{train,val,test}``) with the val images in ``CUBV2/``, as
the real data. Masks go to ``masks/`` beside ``images/``; the generating factors go to the sidecar
``factors.csv`` at the root, never into the CUB tables.

Each image holds one bird-like object on a textured background:
- body: a rotated ellipse (major axis 35-60 % of the shorter side, aspect 1.5-2.5) with a
  class-agnostic grey blotch texture, so it is object evidence but not class evidence;
- head: a disk at one end of the body (about 10 % of the object area) with a class-specific hue
  (up to 10 hues, 18 degrees apart) and pattern (solid, stripes, dots, ring: classes 0-9 solid,
  10-19 striped, ...): the only discriminative part, so plain CAM under-covers the object;
- background: one of four texture families (stripes, checkerboard, blurred noise, blobs) in one
  of eight palettes. With probability ``p_habitat`` it is the class's own "habitat", otherwise
  random, so backgrounds correlate with the class (CAM leaks onto them) yet vary within it (what
  CRR exploits).
Variants: ``default`` (p_habitat 0.5), ``under`` (0: only under-coverage), ``over`` (0.9 and a
smaller head: background leakage), ``under_large`` (as ``under`` with CUB-like object sizes,
major axis 55-85 %), ``under_xl`` (as ``under``, major axis 80-100 % and aspect 1.1-1.5: the
object's box covers about 56 % of the image; the head is about 6 % of the object area),
``under_xl_small_head`` (as ``under_xl`` with the head radius 8 % instead of 11 % of the body
length, about 3 % of the object area, so CAM under-covers more), ``under_mid`` (that head on
objects of major axis 55-75 %, aspect 1.1-1.5: boxes about 30 % of the image, so a whole-image
box scores MaxBoxAccV2 about 15 instead of 56-59 on ``under_xl_small_head``; the MinMaxCAM
learning test) and
``source`` (p_habitat 0.5, large objects, and the body tinted with a class-specific hue, so the
whole object is class evidence). ``source`` stands in for ImageNet pre-training: a backbone
trained on it has body features, which a CAM classifier trained on ``under_large`` or the
``under_xl`` variants then leaves unused (the under-coverage that MinMaxCAM's FRR addresses). A
backbone trained from scratch on ``default`` alone has no body features, so no re-weighting of
its channels (all that MinMaxCAM changes) can cover the body. Deterministic: image i uses
``numpy.random.default_rng(seed * 1_000_000 + i)``; all variants draw the same random numbers,
so adding variants left the ``default`` images unchanged.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from datamodules.formats.cub import CUBTable, WSOLSplit, write_cub, write_wsol_metadata

PALETTES = np.array(
    [
        [[34, 120, 60], [120, 170, 80]],  # forest
        [[40, 90, 170], [150, 200, 230]],  # water
        [[190, 160, 110], [230, 210, 160]],  # sand
        [[110, 80, 50], [160, 120, 80]],  # bark
        [[150, 150, 160], [210, 210, 215]],  # rock
        [[200, 80, 40], [240, 170, 90]],  # autumn
        [[90, 40, 120], [170, 120, 190]],  # dusk
        [[60, 60, 60], [130, 130, 110]],  # shade
    ],
    dtype=np.float32,
)
FAMILIES = ("stripes", "checker", "noise", "blobs")
PATTERNS = ("solid", "stripes", "dots", "ring")
BACKGROUND_CONTRAST = 0.5


class Variant(NamedTuple):
    """Generating factors of a twin variant."""

    p_habitat: float  # probability of the class's own habitat background
    head_scale: float  # head radius as a fraction of the body's major axis
    body_tint: float  # mix of the class body hue into the grey body (0: class-agnostic)
    length_range: tuple[float, float]  # major axis as a fraction of the shorter image side
    aspect_range: tuple[float, float]  # ratio of the body ellipse's axes


VARIANTS: dict[str, Variant] = {
    "default": Variant(0.5, 0.11, 0.0, (0.35, 0.6), (1.5, 2.5)),
    "under": Variant(0.0, 0.11, 0.0, (0.35, 0.6), (1.5, 2.5)),
    "over": Variant(0.9, 0.08, 0.0, (0.35, 0.6), (1.5, 2.5)),
    "under_large": Variant(0.0, 0.11, 0.0, (0.55, 0.85), (1.5, 2.5)),
    "under_xl": Variant(0.0, 0.11, 0.0, (0.8, 1.0), (1.1, 1.5)),
    "under_xl_small_head": Variant(0.0, 0.08, 0.0, (0.8, 1.0), (1.1, 1.5)),
    "under_mid": Variant(0.0, 0.08, 0.0, (0.55, 0.75), (1.1, 1.5)),
    "source": Variant(0.5, 0.11, 0.3, (0.55, 0.85), (1.5, 2.5)),
}
BODY_HUE_SHIFT = 45  # the body tint hue is the head hue + 45 (OpenCV units), distinct per class


def class_traits(num_classes: int, seed: int) -> list[dict]:
    """Per class: head hue and pattern (distinct pairs), habitat family and palette."""
    rng = np.random.default_rng(seed)
    num_hues = min(num_classes, 10)  # hues at least 18 degrees apart; patterns split the rest
    traits = []
    for c in range(num_classes):
        traits.append(
            {
                "hue": int(180 * (c % num_hues) / num_hues),  # OpenCV hue in [0, 180)
                "pattern": PATTERNS[(c // num_hues) % len(PATTERNS)],
                "family": int(rng.integers(len(FAMILIES))),
                "palette": int(rng.integers(len(PALETTES))),
            }
        )
    return traits


def _background(rng: np.random.Generator, height: int, width: int, family: int, palette: int):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    name = FAMILIES[family]
    if name == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(8, 24) * max(height, width) / 224
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    elif name == "checker":
        cell = rng.uniform(10, 30) * max(height, width) / 224
        mix = ((xx // cell + yy // cell) % 2).astype(np.float32)
    elif name == "noise":
        field = rng.normal(size=(height, width)).astype(np.float32)
        field = cv2.GaussianBlur(field, (0, 0), max(height, width) / 40)
        mix = (field > 0).astype(np.float32) * 0.7 + 0.3 * (field - field.min()) / np.ptp(field)
    else:
        mix = np.zeros((height, width), np.float32)
        for _ in range(int(rng.integers(6, 14))):
            center = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.circle(mix, center, int(rng.uniform(0.04, 0.12) * max(height, width)), 1.0, -1)
    low, high = PALETTES[palette]
    mix = 0.5 + BACKGROUND_CONTRAST * (mix - 0.5)  # muted textures, as CUB's sky and foliage
    image = low[None, None] + mix[..., None] * (high - low)[None, None]
    return image + rng.normal(0, 6, image.shape).astype(np.float32)


def _head(rng, image, mask, center, radius, hue, pattern) -> None:
    """Paint the class-specific head disk (hue and pattern) into ``image`` and ``mask``."""
    height, width = mask.shape
    head = np.zeros((height, width), np.uint8)
    cv2.circle(head, center, radius, 1, -1)
    colour = cv2.cvtColor(np.uint8([[[hue, 230, 230]]]), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    second = cv2.cvtColor(np.uint8([[[(hue + 90) % 180, 200, 120]]]), cv2.COLOR_HSV2RGB)[0, 0]
    yy, xx = np.mgrid[0:height, 0:width]
    dy, dx = yy - center[1], xx - center[0]
    if pattern == "stripes":
        accent = (((dx + dy) // max(radius // 3, 1)) % 2) == 0
    elif pattern == "dots":
        step = max(radius // 2, 2)
        accent = ((dx % step) - step // 2) ** 2 + ((dy % step) - step // 2) ** 2 < (step // 3) ** 2
    elif pattern == "ring":
        accent = np.abs(np.hypot(dx, dy) - 0.6 * radius) < max(radius / 6, 1)
    else:
        accent = np.zeros((height, width), bool)
    inside = head.astype(bool)
    image[inside] = colour
    image[inside & accent] = second.astype(np.float32)
    mask |= head


def _paint_body(rng, image, body, hue: int, tint: float) -> None:
    """Grey blotch texture on the ``body`` mask, mixed by ``tint`` with the class body hue."""
    height, width = body.shape
    blotches = cv2.GaussianBlur(rng.normal(size=(height, width)).astype(np.float32), (0, 0), 3)
    grey = 130 + 60 * blotches / (np.abs(blotches).max() + 1e-6)
    inside = body.astype(bool)
    colour = cv2.cvtColor(np.uint8([[[(hue + BODY_HUE_SHIFT) % 180, 255, 255]]]), cv2.COLOR_HSV2RGB)
    gain = (1 - tint) + tint * colour[0, 0].astype(np.float32) / 255
    image[inside] = grey[inside][:, None] * gain[None]


def render_bird(
    rng,
    size: tuple[int, int],
    traits: dict,
    habitat: bool,
    head_scale: float,
    body_tint: float = 0.0,
    length_range: tuple[float, float] = (0.35, 0.6),
    aspect_range: tuple[float, float] = (1.5, 2.5),
):
    """An (H, W, 3) uint8 image, its (H, W) {0, 1} mask and inclusive box (x0, y0, x1, y1).

    ``body_tint`` in [0, 1] mixes the body's grey with the class body hue (0: class-agnostic);
    ``length_range`` bounds the body's major axis as a fraction of the shorter side and
    ``aspect_range`` the ratio of its axes.
    """
    width, height = size
    family, palette = (
        (traits["family"], traits["palette"])
        if habitat
        else (int(rng.integers(len(FAMILIES))), int(rng.integers(len(PALETTES))))
    )
    image = _background(rng, height, width, family, palette)
    side = min(height, width)
    for _ in range(1000):  # place the object so that 1 <= x0 and x1 <= W - 2 (no clipping)
        length = rng.uniform(*length_range) * side
        axes = (int(length / 2), int(length / 2 / rng.uniform(*aspect_range)))
        angle = rng.uniform(0, 360)
        center = (int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.8) * height))
        theta = np.deg2rad(angle)
        head_center = (
            int(center[0] + 0.9 * axes[0] * np.cos(theta)),
            int(center[1] + 0.9 * axes[0] * np.sin(theta)),
        )
        radius = max(int(head_scale * length), 2)
        mask = np.zeros((height, width), np.uint8)
        cv2.ellipse(mask, center, axes, angle, 0, 360, 1, -1)
        cv2.circle(mask, head_center, radius, 1, -1)
        ys, xs = np.nonzero(mask)
        if xs.min() >= 1 and ys.min() >= 1 and xs.max() <= width - 2 and ys.max() <= height - 2:
            break
    else:
        raise RuntimeError("could not place the object inside the image")
    body = np.zeros((height, width), np.uint8)
    cv2.ellipse(body, center, axes, angle, 0, 360, 1, -1)
    _paint_body(rng, image, body, traits["hue"], body_tint)
    mask = body.copy()
    _head(rng, image, mask, head_center, radius, traits["hue"], traits["pattern"])
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return np.clip(image, 0, 255).astype(np.uint8), mask, box


def make_synthetic_cub(
    root: str | Path,
    num_classes: int = 20,
    per_class: tuple[int, int, int] = (30, 5, 15),
    size_range: tuple[int, int] = (300, 500),
    seed: int = 0,
    variant: str = "default",
) -> Path:
    """Write the synthetic birds under ``root``; return ``root``.

    Args:
        root: Output folder; gets ``CUB_200_2011/``, ``CUBV2/``, ``metadata/CUB/``, ``factors.csv``.
        num_classes: Number of bird classes (20 or more for the full twin).
        per_class: Images per class in (train, val, test).
        size_range: Range of image sides in pixels (CUB: about 300 to 500).
        seed: Seed of the class traits and of every image.
        variant: ``default``, ``under``, ``over``, ``under_large``, ``under_xl``,
            ``under_xl_small_head``, ``under_mid`` or ``source`` (module docstring).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    p_habitat, head_scale, body_tint, length_range, aspect_range = VARIANTS[variant]
    root = Path(root)
    traits = class_traits(num_classes, seed)
    names = {c + 1: f"{c + 1:03d}.Synthetic_Bird_{c + 1}" for c in range(num_classes)}
    table = CUBTable([], {}, {}, {}, {}, names)
    splits = {name: WSOLSplit([]) for name in ("train", "val", "test")}
    factors = []
    image_id = 0
    for c in range(num_classes):
        for split, count in zip(("train", "val", "test"), per_class, strict=True):
            for j in range(count):
                image_id += 1
                rng = np.random.default_rng(seed * 1_000_000 + image_id)
                size = tuple(int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
                habitat = bool(rng.random() < p_habitat)
                image, mask, box = render_bird(
                    rng, size, traits[c], habitat, head_scale, body_tint, length_range, aspect_range
                )
                rel = f"{names[c + 1]}/Synthetic_Bird_{c + 1}_{split}_{j:04d}.png"
                folder = root / ("CUBV2" if split == "val" else "CUB_200_2011")
                _save(folder / "images" / rel, image)
                _save(folder / "masks" / rel, mask * 255)
                splits[split].image_ids.append(rel)
                splits[split].labels[rel] = c
                splits[split].sizes[rel] = size
                splits[split].boxes[rel] = [box]
                factors.append(
                    [rel, split, c, int(habitat), traits[c]["hue"], traits[c]["pattern"]]
                )
                if split != "val":
                    _add_cub_row(table, rel, c + 1, split == "train", box)
    write_cub(root / "CUB_200_2011", table)
    for name, split in splits.items():
        write_wsol_metadata(root / "metadata" / "CUB" / name, split)
    with open(root / "factors.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(
            [["path", "split", "label", "habitat", "hue", "pattern"], *factors]
        )
    return root


def _add_cub_row(table: CUBTable, rel: str, label: int, train: bool, box) -> None:
    key = len(table.ids) + 1
    x0, y0, x1, y1 = box
    table.ids.append(key)
    table.paths[key], table.labels[key], table.is_train[key] = rel, label, train
    table.boxes[key] = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    if not cv2.imwrite(str(path), data):
        raise OSError(f"could not write {path}")
