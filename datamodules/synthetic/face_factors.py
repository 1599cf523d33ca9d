"""The factors of the synthetic faces: identity, pose, expression, style and the fine detail code.

Every factor is a small frozen dataclass, so tests and methods can mix them freely (the identity of
one image with the pose of another, one attribute added or removed) and hand them to
:func:`datamodules.synthetic.face_render.render`. This module also holds the attribute table: which
of CelebA's 40 attributes are rendered, at which level they vary (identity, clip, image), their
target prevalence and the box (in the 178 x 218 CelebA frame, zero pose) where each one is drawn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

HAIR_COLORS: tuple[str, ...] = ("black", "blond", "brown", "gray", "auburn")
HAIR_ATTRIBUTES = {
    "Black_Hair": "black",
    "Blond_Hair": "blond",
    "Brown_Hair": "brown",
    "Gray_Hair": "gray",
}
EXPRESSIONS: tuple[str, ...] = ("sad", "angry", "afraid", "calm", "happy", "excited")

# Detail-code regions in the 128 x 128 crop whose top-left is (x=25, y=45) of the CelebA frame:
# (x0, y0, width, height), on the 16-px grid: two eyes 16x16, two cheeks 32x16, chin band 32x16.
CROP_ORIGIN = (25, 45)
DETAIL_REGIONS: tuple[tuple[int, int, int, int], ...] = (
    (32, 64, 16, 16),
    (80, 64, 16, 16),
    (16, 80, 32, 16),
    (80, 80, 32, 16),
    (48, 112, 32, 16),
)
DETAIL_AMPLITUDE = 0.2  # delta, as a fraction of 255, along the identity's RGB unit vector


@dataclass(frozen=True)
class AttributeSpec:
    """How one CelebA attribute is produced.

    Attributes:
        name: official CelebA name.
        rendered: whether the renderer draws it.
        level: ``identity``, ``clip`` or ``image`` (``iid`` for unrendered negative controls).
        prevalence: the designed fraction of positive images.
        region: (x0, y0, x1, y1) box in the 178 x 218 frame where it is drawn at zero pose.
    """

    name: str
    rendered: bool
    level: str
    prevalence: float
    region: tuple[int, int, int, int] = (0, 0, 178, 218)


_MOUTH = (58, 136, 120, 170)
_EYES = (52, 92, 126, 122)
_HAIR = (0, 15, 178, 198)
ATTRIBUTE_SPECS: dict[str, AttributeSpec] = {
    s.name: s
    for s in (
        AttributeSpec("Bald", True, "identity", 0.04, (22, 15, 156, 125)),
        AttributeSpec("Bangs", True, "identity", 0.15, (42, 66, 136, 102)),
        AttributeSpec("Big_Lips", True, "identity", 0.24, _MOUTH),
        AttributeSpec("Big_Nose", True, "identity", 0.23, (70, 104, 108, 146)),
        AttributeSpec("Black_Hair", True, "identity", 0.26, _HAIR),
        AttributeSpec("Blond_Hair", True, "identity", 0.16, _HAIR),
        AttributeSpec("Blurry", True, "image", 0.05),
        AttributeSpec("Brown_Hair", True, "identity", 0.21, _HAIR),
        AttributeSpec("Chubby", True, "identity", 0.08, (15, 35, 163, 198)),
        AttributeSpec("Eyeglasses", True, "clip", 0.08, (36, 90, 142, 126)),
        AttributeSpec("Goatee", True, "identity", 0.08, (66, 148, 112, 178)),
        AttributeSpec("Gray_Hair", True, "identity", 0.08, _HAIR),
        AttributeSpec("Heavy_Makeup", True, "clip", 0.29, _EYES),
        AttributeSpec("Male", True, "identity", 0.40, (0, 15, 178, 198)),
        AttributeSpec("Mouth_Slightly_Open", True, "image", 0.45, _MOUTH),
        AttributeSpec("Mustache", True, "identity", 0.06, (58, 128, 120, 156)),
        AttributeSpec("Narrow_Eyes", True, "identity", 0.12, _EYES),
        AttributeSpec("No_Beard", True, "identity", 0.87, (58, 128, 120, 178)),
        AttributeSpec("Pale_Skin", True, "identity", 0.05, (15, 35, 163, 218)),
        AttributeSpec("Smiling", True, "image", 0.50, _MOUTH),
        AttributeSpec("Wearing_Hat", True, "clip", 0.05, (10, 0, 168, 100)),
        AttributeSpec("Wearing_Lipstick", True, "clip", 0.27, _MOUTH),
        AttributeSpec("Wearing_Necklace", True, "clip", 0.12, (0, 198, 178, 218)),
        AttributeSpec("Wearing_Necktie", True, "clip", 0.07, (0, 198, 178, 218)),
        AttributeSpec("Young", True, "identity", 0.75, (40, 70, 138, 160)),
        # Negative controls: i.i.d. per image, never drawn.
        AttributeSpec("5_o_Clock_Shadow", False, "iid", 0.11),
        AttributeSpec("Arched_Eyebrows", False, "iid", 0.27),
        AttributeSpec("Attractive", False, "iid", 0.50),
        AttributeSpec("Bags_Under_Eyes", False, "iid", 0.20),
        AttributeSpec("Bushy_Eyebrows", False, "iid", 0.14),
        AttributeSpec("Double_Chin", False, "iid", 0.10),
        AttributeSpec("High_Cheekbones", False, "iid", 0.45),
        AttributeSpec("Oval_Face", False, "iid", 0.30),
        AttributeSpec("Pointy_Nose", False, "iid", 0.28),
        AttributeSpec("Receding_Hairline", False, "iid", 0.10),
        AttributeSpec("Rosy_Cheeks", False, "iid", 0.10),
        AttributeSpec("Sideburns", False, "iid", 0.10),
        AttributeSpec("Straight_Hair", False, "iid", 0.21),
        AttributeSpec("Wavy_Hair", False, "iid", 0.32),
        AttributeSpec("Wearing_Earrings", False, "iid", 0.19),
    )
}
# CelebA's official order is sorted order; kept torch-free so rendering workers start fast
# (tests check it equals datamodules.formats.celeba.ATTRIBUTE_NAMES).
ATTRIBUTE_ORDER = tuple(sorted(ATTRIBUTE_SPECS))
RENDERED_ATTRIBUTES = tuple(n for n in ATTRIBUTE_ORDER if ATTRIBUTE_SPECS[n].rendered)
NEGATIVE_CONTROLS = tuple(n for n in ATTRIBUTE_ORDER if not ATTRIBUTE_SPECS[n].rendered)


@dataclass(frozen=True)
class DetailCode:
    """An identity's fine texture code: a +-1 pattern per detail region along an RGB unit vector.

    Every pattern is one of 7 types (checker, horizontal or vertical stripes with period 2 or 4,
    diagonal stripes with period 4); every 4 x 4 tile of every type sums to zero, so the code
    vanishes exactly under 4 x 4 (hence 8 x 8 and 16 x 16) average pooling of the 128 crop.

    Attributes:
        seed: seeds the pattern types, signs and colour direction.
        amplitude: delta as a fraction of 255 (0 renders no detail).
    """

    seed: int
    amplitude: float = DETAIL_AMPLITUDE

    @cached_property
    def code(self) -> tuple[tuple[int, ...], tuple[int, ...], np.ndarray]:
        """(pattern type per region, sign per region, RGB unit vector)."""
        rng = np.random.default_rng([self.seed, 0xDE7A11])
        types = tuple(int(t) for t in rng.integers(0, 7, len(DETAIL_REGIONS)))
        signs = tuple(int(s) for s in rng.choice([-1, 1], len(DETAIL_REGIONS)))
        direction = rng.normal(size=3)
        return types, signs, direction / np.linalg.norm(direction)

    def pattern(self, region: int, height: int, width: int) -> np.ndarray:
        """The +-1 int16 pattern (height, width) of one region (read-only, cached)."""
        types, signs, _ = self.code
        return signs[region] * _base_pattern(types[region], height, width)


@lru_cache(maxsize=64)
def _base_pattern(kind: int, height: int, width: int) -> np.ndarray:
    """One of the 7 +-1 patterns; every 4 x 4 tile sums to zero."""
    y, x = np.mgrid[0:height, 0:width]
    if kind == 6:
        base = np.where((x + y) % 4 < 2, 1, -1)
    else:
        period, axis = ((1, "xy"), (2, "xy"), (1, "y"), (2, "y"), (1, "x"), (2, "x"))[kind]
        phase = (x // period if "x" in axis else 0) + (y // period if "y" in axis else 0)
        base = 1 - 2 * (phase % 2)
    base = base.astype(np.int16)
    base.flags.writeable = False
    return base


@dataclass(frozen=True)
class Identity:
    """Traits fixed for one person (continuous values are jittered slightly per image).

    Boolean fields are the rendered identity-level attributes; the floats are continuous shape and
    colour parameters (1.0 = average) that vary within each attribute class.
    """

    male: bool = False
    young: bool = True
    chubby: bool = False
    pale_skin: bool = False
    narrow_eyes: bool = False
    big_nose: bool = False
    big_lips: bool = False
    hair_color: str = "brown"
    bangs: bool = False
    bald: bool = False
    mustache: bool = False
    goatee: bool = False
    face_width: float = 1.0
    face_aspect: float = 1.0
    jaw: float = 0.5
    skin_tone: float = 0.4
    eye_spacing: float = 1.0
    eye_size: float = 1.0
    nose_length: float = 1.0
    nose_width: float = 1.0
    mouth_width: float = 1.0
    lip_size: float = 1.0
    iris_hue: float = 0.08
    hair_shade: float = 1.0
    detail: DetailCode = DetailCode(0)


@dataclass(frozen=True)
class Pose:
    """Head rotation (degrees) and per-image camera nuisances.

    Attributes:
        yaw, pitch, roll: head rotation; yaw > 0 turns the face to the image's right.
        dx, dy: head shift in pixels of the 178 x 218 frame (multiples of 4 keep the detail grid).
        scale: head scale; exposure: global brightness gain; blurry: Gaussian blur (sigma 2 px).
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    exposure: float = 1.0
    blurry: bool = False


@dataclass(frozen=True)
class Expression:
    """Continuous valence and arousal in [-1, 1]; Smiling is valence > 0, open mouth arousal > 0."""

    valence: float = -0.5
    arousal: float = -0.5

    @property
    def smiling(self) -> bool:
        return self.valence > 0

    @property
    def mouth_open(self) -> bool:
        return self.arousal > 0

    @property
    def category(self) -> str:
        """One of :data:`EXPRESSIONS`, a region of the (valence, arousal) plane."""
        v, a = self.valence, self.arousal
        if v <= 0:
            return "sad" if a <= 0 else ("angry" if v < -0.5 else "afraid")
        return "calm" if a <= 0 else ("happy" if a < 0.6 else "excited")


@dataclass(frozen=True)
class Style:
    """Constant within a clip: background, lighting, clothes and accessories.

    Hues are in [0, 1); angles in radians; strengths in [0, 1].
    """

    bg_hue: float = 0.55
    bg_angle: float = 0.0
    bg_strength: float = 0.3
    light_angle: float = 0.0
    light_strength: float = 0.1
    clothes_hue: float = 0.6
    accessory_hue: float = 0.0
    eyeglasses: bool = False
    hat: bool = False
    lipstick: bool = False
    heavy_makeup: bool = False
    necklace: bool = False
    necktie: bool = False


def rendered_attributes(
    identity: Identity, pose: Pose, expression: Expression, style: Style
) -> dict[str, bool]:
    """The value of every rendered attribute implied by the factors."""
    hair = "none" if identity.bald else identity.hair_color
    values = {
        "Bald": identity.bald,
        "Bangs": identity.bangs and not identity.bald,
        "Big_Lips": identity.big_lips,
        "Big_Nose": identity.big_nose,
        "Blurry": pose.blurry,
        "Chubby": identity.chubby,
        "Eyeglasses": style.eyeglasses,
        "Goatee": identity.goatee,
        "Heavy_Makeup": style.heavy_makeup,
        "Male": identity.male,
        "Mouth_Slightly_Open": expression.mouth_open,
        "Mustache": identity.mustache,
        "Narrow_Eyes": identity.narrow_eyes,
        "No_Beard": not (identity.mustache or identity.goatee),
        "Pale_Skin": identity.pale_skin,
        "Smiling": expression.smiling,
        "Wearing_Hat": style.hat,
        "Wearing_Lipstick": style.lipstick,
        "Wearing_Necklace": style.necklace,
        "Wearing_Necktie": style.necktie,
        "Young": identity.young,
    }
    values.update({name: hair == color for name, color in HAIR_ATTRIBUTES.items()})
    return values


_IDENTITY_FLAGS = {
    "Bald": "bald",
    "Bangs": "bangs",
    "Big_Lips": "big_lips",
    "Big_Nose": "big_nose",
    "Chubby": "chubby",
    "Goatee": "goatee",
    "Male": "male",
    "Mustache": "mustache",
    "Narrow_Eyes": "narrow_eyes",
    "Pale_Skin": "pale_skin",
    "Young": "young",
}
_STYLE_FLAGS = {
    "Eyeglasses": "eyeglasses",
    "Heavy_Makeup": "heavy_makeup",
    "Wearing_Hat": "hat",
    "Wearing_Lipstick": "lipstick",
    "Wearing_Necklace": "necklace",
    "Wearing_Necktie": "necktie",
}


def with_attribute(
    identity: Identity, pose: Pose, expression: Expression, style: Style, name: str, value: bool
) -> tuple[Identity, Pose, Expression, Style]:
    """Return the factors with one rendered attribute set to ``value``, everything else unchanged.

    Only the factor that draws ``name`` changes; the designed correlations (Male excludes
    lipstick, ...) are deliberately not enforced, so an edit is a single, local change.
    Smiling and Mouth_Slightly_Open flip the sign of valence or arousal, keeping its magnitude.

    Raises:
        ValueError: if ``name`` is not a rendered attribute.
    """
    if name in _IDENTITY_FLAGS:
        identity = dataclasses.replace(identity, **{_IDENTITY_FLAGS[name]: value})
    elif name in _STYLE_FLAGS:
        style = dataclasses.replace(style, **{_STYLE_FLAGS[name]: value})
    elif name in HAIR_ATTRIBUTES:
        current = identity.hair_color == HAIR_ATTRIBUTES[name]
        if value != current:
            color = HAIR_ATTRIBUTES[name] if value else "auburn"
            identity = dataclasses.replace(identity, hair_color=color, bald=False)
    elif name == "No_Beard":
        beard = {"mustache": False, "goatee": False} if value else {"goatee": True}
        identity = dataclasses.replace(identity, **beard)
    elif name == "Smiling":
        v = abs(expression.valence) if value else -abs(expression.valence)
        expression = dataclasses.replace(expression, valence=v)
    elif name == "Mouth_Slightly_Open":
        a = abs(expression.arousal) if value else -abs(expression.arousal)
        expression = dataclasses.replace(expression, arousal=a)
    elif name == "Blurry":
        pose = dataclasses.replace(pose, blurry=value)
    else:
        raise ValueError(f"{name!r} is not a rendered attribute; rendered: {RENDERED_ATTRIBUTES}")
    return identity, pose, expression, style
