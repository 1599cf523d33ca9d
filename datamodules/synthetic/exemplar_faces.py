"""The exemplar-faces twin (spec hallucination.md section 9) in CelebA's on-disk layout.

``make_exemplar_faces(root, preset, seed)`` writes::

    root/img_align_celeba/000001.jpg ...   178 x 218, JPEG quality 95, no chroma subsampling
    root/list_attr_celeba.txt list_eval_partition.txt identity_CelebA.txt   (official formats)
    root/exemplar_faces.csv     the sidecar (datamodules.formats.exemplar_regions)
    root/exemplar_faces.json    what wrote the twin (``ensure_exemplar_faces`` reads it)

Faces are drawn in the 128 x 128 crop frame (rows 45-172, columns 25-152 of the aligned image:
``CROP_BOXES["face128"]``), so the exemplar DataModule's crop recovers them exactly.

- Coarse identity traits, visible at 8 and 16 px: skin, background and hair colours, face-ellipse
  size (+-5%), hair shape (short cap when ``Male``, long hair otherwise), glasses (``Eyeglasses``).
- Per-image nuisance: brightness gain in [0.9, 1.1], a shift of the face in {-4, 0, 4}^2 px, the
  mouth-ellipse height (expression).
- Fine identity detail, invisible at 8 and 16 px: five regions of the crop (``REGION_BOXES``: two
  eyes 16 x 16, chin band 16 x 32, two cheeks 32 x 16; 12.5% of the pixels) each carry a +-1
  pattern of one of seven types (``PATTERNS``) times delta = 0.2 (51 grey levels, rounded per
  channel) along an identity-specific RGB unit vector, added to the uniform skin.

Deviations from the spec, all needed for its assertion H1 (equal coarse parameters and different
detail codes give 16 px and 8 px inputs, bicubic antialiased, within 2/255 after JPEG; the
worst cases measured are in docs/results/exemplar_sr.md, ``tests/test_exemplar_faces.py`` checks
a sample):

- The regions sit on the 16-px grid of the crop and do not move with the face's shift (they are
  placed so that they stay inside the skin, clear of eyebrows, glasses, mouth and hair, for every
  nuisance draw). Moving them by 4 px keeps the 4 x 4 tiles aligned but leaks more.
- Within each 4 x 4 tile a pattern is its named type, the tiles alternate in sign like a
  checkerboard (8-px period), and period-4 profiles start one pixel in (``+--+`` within a tile).
  Every 4 x 4 tile still sums to zero (so every 8 x 8 and 16 x 16 block mean of the crop is
  unchanged); the alternation and the phase also cancel the tiles' first moments, which the
  bicubic kernel's varying weights at the region edges otherwise turn into visible leaks (plain
  stripes break H1; docs/results/exemplar_sr.md).
- The pattern is added in integer grey levels after the gain (skin levels are rounded first), so
  the uint8 image itself has zero-sum tiles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datamodules.formats import celeba as celeba_format
from datamodules.formats.exemplar_regions import REGION_NAMES, SIDECAR_FILE, write_sidecar
from datamodules.images import CELEBA_FRAME

CROP_TOP, CROP_LEFT, CROP_SIZE = 45, 25, 128  # CROP_BOXES["face128"] of datamodules.celeba
#: (top, left, height, width) in the 128 x 128 crop, in the order of REGION_NAMES.
REGION_BOXES = (
    (48, 32, 16, 16),
    (48, 80, 16, 16),
    (96, 48, 16, 32),
    (64, 32, 32, 16),
    (64, 80, 32, 16),
)
PATTERNS = ("checker2", "checker4", "hstripes2", "hstripes4", "vstripes2", "vstripes4", "diagonal4")
DELTA = 0.2  # pattern amplitude in [0, 1] units along the identity's RGB unit vector
SHIFTS = (-4, 0, 4)
MANIFEST_FILE = "exemplar_faces.json"
_FACE_CENTRE = (70, 64)  # crop (row, col) before the shift
_FACE_AXES = (56, 46)  # semi-axes (rows, cols) at size 1


@dataclass(frozen=True)
class ExemplarPreset:
    """``identities`` (train, val, test) x ``images`` each, plus ``small`` identities of 3-4 images
    (the 5-image filter must drop them)."""

    identities: tuple[int, int, int]
    images: int
    small: int = 5


PRESETS = {
    "tiny": ExemplarPreset((30, 4, 6), 6),  # 257 images, for tests
    "small": ExemplarPreset((300, 20, 50), 10),  # 3,717 images
}
_SMALL_SPLITS = (0, 0, 0, 1, 2)  # split of each small identity (cycled)


@dataclass(frozen=True)
class CoarseTraits:
    """Identity-level traits seen at low resolution; colours RGB in [0, 1]."""

    skin: tuple[float, float, float]
    background: tuple[float, float, float]
    hair: tuple[float, float, float]
    size: float  # face-ellipse scale, 0.95-1.05
    male: bool  # short hair cap (else long hair)
    eyeglasses: bool


@dataclass(frozen=True)
class DetailCode:
    """Identity-level fine detail: a pattern index (into PATTERNS) per region, an RGB direction."""

    patterns: tuple[int, ...]
    direction: tuple[float, float, float]

    @property
    def amplitude(self) -> np.ndarray:
        """int (3,) grey levels added where the pattern is +1 (subtracted where it is -1)."""
        return np.rint(DELTA * 255 * np.asarray(self.direction)).astype(np.int32)


@dataclass(frozen=True)
class Nuisance:
    """Per-image draw: brightness gain, face shift (rows, cols) in px, mouth half-height in px."""

    gain: float = 1.0
    dy: int = 0
    dx: int = 0
    mouth: float = 3.5


def coarse_traits(coarse_id: int, seed: int = 0) -> CoarseTraits:
    """The coarse traits of identity ``coarse_id`` (a pure function of ``seed`` and the id)."""
    rng = np.random.default_rng([seed, 1, coarse_id])
    colour = lambda low, high: tuple(float(v) for v in rng.uniform(low, high, 3))  # noqa: E731
    skin, background, hair = colour(0.33, 0.66), colour(0.0, 1.0), colour(0.05, 0.8)
    size = float(rng.uniform(0.95, 1.05))
    return CoarseTraits(
        skin, background, hair, size, bool(rng.random() < 0.5), bool(rng.random() < 0.25)
    )


def detail_code(detail_id: int, seed: int = 0) -> DetailCode:
    """The detail code of identity ``detail_id`` (a pure function of ``seed`` and the id)."""
    rng = np.random.default_rng([seed, 2, detail_id])
    patterns = tuple(int(k) for k in rng.integers(0, len(PATTERNS), len(REGION_NAMES)))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    return DetailCode(patterns, tuple(float(v) for v in direction))


def draw_nuisance(rng: np.random.Generator) -> Nuisance:
    """One per-image nuisance draw."""
    dy, dx = (int(v) for v in rng.choice(SHIFTS, 2))
    return Nuisance(float(rng.uniform(0.9, 1.1)), dy, dx, float(rng.uniform(2.0, 5.0)))


def detail_pattern(kind: int, height: int, width: int) -> np.ndarray:
    """int8 (height, width) in {-1, 1}: pattern ``PATTERNS[kind]`` with 4 x 4 tiles of alternating
    sign (see the module docstring); every 4 x 4 tile (from the top-left corner) sums to zero."""
    y, x = np.mgrid[:height, :width]
    name = PATTERNS[kind]
    v, u = y + 1, x + 1  # a period-4 profile then reads +--+ within a tile: zero first moment
    period = 2 if name.endswith("2") else 4
    step = period // 2
    phase = {
        "checker": v // step + u // step,
        "hstripes": v // step,
        "vstripes": u // step,
        "diagonal": (u + v) % 4 // 2,
    }[name[:-1]]
    return np.where((phase + y // 4 + x // 4) % 2 == 0, 1, -1).astype(np.int8)


def render(coarse_id: int, detail_id: int, nuisance: Nuisance, seed: int = 0) -> np.ndarray:
    """uint8 (218, 178, 3): the coarse traits of ``coarse_id`` with the detail of ``detail_id``."""
    return paint(coarse_traits(coarse_id, seed), detail_code(detail_id, seed), nuisance)


def paint(traits: CoarseTraits, code: DetailCode, nuisance: Nuisance) -> np.ndarray:
    """uint8 (218, 178, 3): the face of ``traits`` under ``nuisance`` with ``code``'s detail."""
    image = np.rint(_paint_coarse(traits, nuisance) * nuisance.gain * 255).astype(np.int32)
    for (top, left, height, width), kind in zip(REGION_BOXES, code.patterns, strict=True):
        pattern = detail_pattern(kind, height, width).astype(np.int32)[..., None]
        rows = slice(CROP_TOP + top, CROP_TOP + top + height)
        image[rows, CROP_LEFT + left : CROP_LEFT + left + width] += pattern * code.amplitude
    return np.clip(image, 0, 255).astype(np.uint8)


def _paint_coarse(traits: CoarseTraits, nuisance: Nuisance) -> np.ndarray:
    """float (218, 178, 3) in [0, 1] before gain and detail; every region is uniform skin."""
    height, width = CELEBA_FRAME
    y = np.arange(height, dtype=np.float64)[:, None] - CROP_TOP  # crop coordinates
    x = np.arange(width, dtype=np.float64)[None, :] - CROP_LEFT
    cy, cx, s = _FACE_CENTRE[0] + nuisance.dy, _FACE_CENTRE[1] + nuisance.dx, traits.size
    inside = lambda oy, ry, rx: ((y - cy - oy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1  # noqa: E731
    image = np.empty((height, width, 3))
    image[:] = traits.background
    if traits.male:  # a short cap
        hair = inside(-8, 62 * s, 52 * s) & (y < cy - 28)
    else:  # long hair down to the shoulders
        hair = inside(4, 72 * s, 58 * s) & (y < cy + 50)
    face = inside(0, _FACE_AXES[0] * s, _FACE_AXES[1] * s)
    image[hair] = traits.hair
    image[face] = traits.skin
    image[face & (y < cy - 36)] = traits.hair  # hairline
    dark = tuple(0.5 * c for c in traits.hair)
    brows = (
        (y >= cy - 31) & (y < cy - 27) & ((np.abs(x - cx + 24) < 10) | (np.abs(x - cx - 24) < 10))
    )
    image[brows] = dark
    if traits.eyeglasses:  # a top bar and two side pieces, away from the eye regions
        bar = (y >= cy - 37) & (y < cy - 33) & (np.abs(x - cx) < 42)
        sides = (y >= cy - 37) & (y < cy - 8) & (np.abs(np.abs(x - cx) - 40) < 2)
        image[bar | sides] = (0.1, 0.1, 0.12)
    image[inside(14, nuisance.mouth, 11)] = (0.55, 0.18, 0.2)
    return image


def _plan(cfg: ExemplarPreset) -> list[tuple[int, int, int]]:
    """(identity, split, image count) per identity: the regular ones by split, then the small."""
    plan, identity = [], 0
    for split, count in enumerate(cfg.identities):
        for _ in range(count):
            identity += 1
            plan.append((identity, split, cfg.images))
    for k in range(cfg.small):
        identity += 1
        plan.append((identity, _SMALL_SPLITS[k % len(_SMALL_SPLITS)], 3 + k % 2))
    return plan


def make_exemplar_faces(root: str | Path, preset: str = "small", seed: int = 0) -> dict:
    """Write the twin of ``preset`` (see :data:`PRESETS`) under ``root``; same seed, same bytes.

    Returns:
        Summary: root, preset, seed, image and identity counts, seconds taken.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    start = time.perf_counter()
    root = Path(root)
    image_dir = root / celeba_format.IMAGE_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    names, splits, identities, rows = [], [], [], []
    for identity, split, count in _plan(PRESETS[preset]):
        traits, code = coarse_traits(identity, seed), detail_code(identity, seed)
        for _ in range(count):
            name = celeba_format.image_name(len(names) + 1)
            nuisance = draw_nuisance(np.random.default_rng([seed, 3, len(names)]))
            image = Image.fromarray(paint(traits, code, nuisance))
            image.save(image_dir / name, format="JPEG", quality=95, subsampling=0)
            names.append(name)
            splits.append(split)
            identities.append(identity)
            rows.append(_sidecar_row(name, identity, split, traits, code, nuisance))
    _write_tables(root, names, splits, identities, rows)
    fingerprint = {"preset": preset, "seed": seed, "renderer_sha256": _renderer_digest()}
    (root / MANIFEST_FILE).write_text(json.dumps(fingerprint, indent=2))
    return {
        "root": str(root),
        "preset": preset,
        "seed": seed,
        "images": len(names),
        "identities": len(set(identities)),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _write_tables(root: Path, names, splits, identities, rows) -> None:
    """The three official tables (only ``Male`` and ``Eyeglasses`` set) and the sidecar."""
    attributes = torch.zeros(len(names), len(celeba_format.ATTRIBUTE_NAMES), dtype=torch.long)
    for column in ("Male", "Eyeglasses"):
        j = celeba_format.ATTRIBUTE_NAMES.index(column)
        attributes[:, j] = torch.tensor([row[column.lower()] for row in rows])
    celeba_format.write_attribute_table(root / celeba_format.ATTR_FILE, names, attributes)
    celeba_format.write_partition(root / celeba_format.PARTITION_FILE, names, splits)
    celeba_format.write_identities(root / celeba_format.IDENTITY_FILE, names, identities)
    write_sidecar(root / SIDECAR_FILE, rows)


def _sidecar_row(name, identity, split, traits, code, nuisance) -> dict[str, object]:
    row: dict[str, object] = {
        "image_id": name,
        "identity": identity,
        "split": split,
        "coarse_id": identity,
        "detail_id": identity,
        "male": int(traits.male),
        "eyeglasses": int(traits.eyeglasses),
        "gain": f"{nuisance.gain:.6f}",
        "dy": nuisance.dy,
        "dx": nuisance.dx,
        "mouth": f"{nuisance.mouth:.6f}",
    }
    row.update({f"direction_{c}": f"{v:.6f}" for c, v in zip("rgb", code.direction, strict=True)})
    for region, box, kind in zip(REGION_NAMES, REGION_BOXES, code.patterns, strict=True):
        row[f"{region}_pattern"] = PATTERNS[kind]
        row.update(
            {
                f"{region}_{f}": v
                for f, v in zip(("top", "left", "height", "width"), box, strict=True)
            }
        )
    return row


def _renderer_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def ensure_exemplar_faces(root: str | Path, preset: str | None, seed: int) -> None:
    """Write the twin at ``root`` unless an up-to-date one is there; data without our manifest
    (real CelebA, another twin) is left alone, a twin of another preset, seed or renderer is
    rewritten, loudly. Nothing when ``preset`` is None (real data is never written)."""
    if preset is None:
        return
    root = Path(root)
    manifest = root / MANIFEST_FILE
    log = logging.getLogger(__name__)
    if (root / celeba_format.ATTR_FILE).exists():
        if not manifest.exists():
            return
        wanted = {"preset": preset, "seed": seed, "renderer_sha256": _renderer_digest()}
        if json.loads(manifest.read_text()) == wanted:
            return
        log.warning("SYNTHETIC DATA: %s was written by another renderer or preset: rewriting", root)
    log.warning(
        "SYNTHETIC DATA: writing the exemplar-faces twin (preset %r, seed %d) to %s. These are "
        "rendered faces, not CelebA.",
        preset,
        seed,
        root,
    )
    make_exemplar_faces(root, preset, seed)
