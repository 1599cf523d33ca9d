"""Sampling the synthetic-face factors: identities, clips, frames, and the identity-disjoint split.

Prevalences and designed correlations (see ``ATTRIBUTE_SPECS`` for the resulting image rates):

- identity level: Male 0.40, Young 0.75, Bald 0.10 of men, Gray_Hair 0.35 of the not Young,
  otherwise hair black / blond / brown / auburn 0.30 / 0.18 / 0.24 / 0.28, Bangs 0.156 of the not
  Bald, Chubby 0.08, Pale_Skin 0.05, Narrow_Eyes 0.12, Big_Nose 0.23, Big_Lips 0.24, Mustache 0.15
  and Goatee 0.20 of men only (No_Beard is neither);
- clip level: Eyeglasses 0.08, Wearing_Hat 0.05, Wearing_Lipstick 0.45 of women,
  P(Heavy_Makeup | Lipstick) = 0.9, P(Heavy_Makeup | woman without lipstick) = 0.1, none for men,
  Wearing_Necklace 0.12, Wearing_Necktie 0.07;
- image level: Smiling 0.5, Mouth_Slightly_Open 0.45 (valence / arousal keep a gap of 0.15 around
  zero), Blurry 0.05; the negative controls are i.i.d. Bernoulli per image.

Every identity draws from its own stream ``np.random.default_rng([seed, identity_id])``, so a record
never depends on how many others were sampled or in which process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from datamodules.synthetic.face_factors import (
    ATTRIBUTE_ORDER,
    ATTRIBUTE_SPECS,
    NEGATIVE_CONTROLS,
    DetailCode,
    Expression,
    Identity,
    Pose,
    Style,
    rendered_attributes,
)

_IRIS_HUES = ((0.05, 0.12), (0.52, 0.62), (0.22, 0.33))
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class FaceRecord:
    """One image's factors. ``identity`` already carries the per-image jitter."""

    identity_id: int
    clip: int
    frame: int
    identity: Identity
    pose: Pose
    expression: Expression
    style: Style
    controls: tuple[bool, ...]

    @property
    def attributes(self) -> dict[str, bool]:
        """All 40 attributes: rendered ones from the factors, negative controls as drawn."""
        values = rendered_attributes(self.identity, self.pose, self.expression, self.style)
        values.update(zip(NEGATIVE_CONTROLS, self.controls, strict=True))
        return {name: bool(values[name]) for name in ATTRIBUTE_ORDER}


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person's traits."""
    u = rng.random(16)
    male, young = bool(u[0] < 0.40), bool(u[1] < 0.75)
    bald = male and bool(u[2] < 0.10)
    if not young and u[3] < 0.35:
        hair = "gray"
    else:
        hair = str(rng.choice(["black", "blond", "brown", "auburn"], p=[0.30, 0.18, 0.24, 0.28]))
    lo, hi = _IRIS_HUES[int(rng.integers(len(_IRIS_HUES)))]
    c = rng.uniform(size=12)
    return Identity(
        male=male,
        young=young,
        chubby=bool(u[4] < 0.08),
        pale_skin=bool(u[5] < 0.05),
        narrow_eyes=bool(u[6] < 0.12),
        big_nose=bool(u[7] < 0.23),
        big_lips=bool(u[8] < 0.24),
        hair_color=hair,
        bangs=not bald and bool(u[9] < 0.156),
        bald=bald,
        mustache=male and bool(u[10] < 0.15),
        goatee=male and bool(u[11] < 0.20),
        face_width=0.96 + 0.07 * c[0],
        face_aspect=0.96 + 0.08 * c[1],
        jaw=float(c[2]),
        skin_tone=float(c[3]),
        eye_spacing=0.95 + 0.1 * c[4],
        eye_size=0.9 + 0.2 * c[5],
        nose_length=0.92 + 0.16 * c[6],
        nose_width=0.9 + 0.2 * c[7],
        mouth_width=0.92 + 0.16 * c[8],
        lip_size=0.9 + 0.2 * c[9],
        iris_hue=lo + (hi - lo) * float(c[10]),
        hair_shade=0.9 + 0.2 * c[11],
        detail=DetailCode(int(rng.integers(2**31))),
    )


def sample_style(rng: np.random.Generator, identity: Identity) -> Style:
    """Draw one clip's background, lighting, clothes and accessories."""
    c = rng.uniform(size=7)
    u = rng.random(7)
    lipstick = not identity.male and bool(u[2] < 0.45)
    makeup = not identity.male and bool(u[3] < (0.9 if lipstick else 0.1))
    return Style(
        bg_hue=float(c[0]),
        bg_angle=float(2 * np.pi * c[1]),
        bg_strength=0.1 + 0.5 * c[2],
        light_angle=float(2 * np.pi * c[3]),
        light_strength=0.03 + 0.17 * c[4],
        clothes_hue=float(c[5]),
        accessory_hue=float(c[6]),
        eyeglasses=bool(u[0] < 0.08),
        hat=bool(u[1] < 0.05),
        lipstick=lipstick,
        heavy_makeup=makeup,
        necklace=bool(u[4] < 0.12),
        necktie=bool(u[5] < 0.07),
    )


def _signed(rng: np.random.Generator, positive: float) -> float:
    """A value in [0.15, 1] with probability ``positive``, else in [-1, -0.15]."""
    magnitude = rng.uniform(0.15, 1.0)
    return float(magnitude if rng.random() < positive else -magnitude)


def sample_frame(rng: np.random.Generator) -> tuple[Pose, Expression]:
    """Draw one image's pose (with camera nuisances) and expression."""
    # near-frontal like CelebA: normal with sd 15 / 9 / 7 deg, clipped to +-40 / 25 / 20
    yaw, pitch, roll = np.clip(rng.normal(0, [15, 9, 7]), [-40, -25, -20], [40, 25, 20])
    dx, dy = (4 * rng.integers(-1, 2, size=2)).tolist()
    pose = Pose(
        yaw=float(yaw),
        pitch=float(pitch),
        roll=float(roll),
        dx=float(dx),
        dy=float(dy),
        scale=float(rng.uniform(0.95, 1.05)),
        exposure=float(rng.uniform(0.9, 1.1)),
        blurry=bool(rng.random() < 0.05),
    )
    return pose, Expression(valence=_signed(rng, 0.5), arousal=_signed(rng, 0.45))


def jitter(rng: np.random.Generator, identity: Identity) -> Identity:
    """Small per-image noise (+-1.5 %) on the continuous identity traits."""
    names = ("face_width", "eye_size", "nose_length", "lip_size", "mouth_width")
    noise = rng.uniform(-0.015, 0.015, size=len(names) + 1)
    changes = {n: getattr(identity, n) * (1 + e) for n, e in zip(names, noise[:-1], strict=True)}
    changes["skin_tone"] = float(np.clip(identity.skin_tone + noise[-1], 0, 1))
    return dataclasses.replace(identity, **changes)


def sample_controls(rng: np.random.Generator) -> tuple[bool, ...]:
    """The negative controls, i.i.d. Bernoulli at their designed prevalence."""
    p = np.array([ATTRIBUTE_SPECS[n].prevalence for n in NEGATIVE_CONTROLS])
    return tuple(bool(v) for v in rng.random(len(p)) < p)


def plan_identity(seed: int, identity_id: int, clip_lengths: list[int]) -> list[FaceRecord]:
    """All records of one identity: ``len(clip_lengths)`` clips of the given lengths."""
    rng = np.random.default_rng([seed, identity_id])
    identity = sample_identity(rng)
    records = []
    for clip, length in enumerate(clip_lengths):
        style = sample_style(rng, identity)
        for frame in range(length):
            pose, expression = sample_frame(rng)
            records.append(
                FaceRecord(
                    identity_id,
                    clip,
                    frame,
                    jitter(rng, identity),
                    pose,
                    expression,
                    style,
                    sample_controls(rng),
                )
            )
    return records


def plan_faces(
    seed: int,
    identities: int,
    clips: int,
    frames: int,
    small_identities: int = 0,
    first_id: int = 1,
) -> list[FaceRecord]:
    """``identities`` people with ``clips`` x ``frames`` images, then ``small_identities`` people
    with a single clip of 3 or 4 images (fewer than 5, for filters that drop small identities)."""
    records = []
    for i in range(identities):
        records += plan_identity(seed, first_id + i, [frames] * clips)
    for j in range(small_identities):
        records += plan_identity(seed, first_id + identities + j, [3 + j % 2])
    return records


def assign_splits(records: list[FaceRecord], seed: int) -> dict[int, int]:
    """Identity-disjoint split (0 train, 1 val, 2 test), about 80/10/10 of identities.

    Identities are grouped by their first rare trait (Bald, Pale_Skin, Mustache, Chubby, or none),
    shuffled within each group and dealt test, val, then eight train, over and over, so a rare
    trait held by two or more identities reaches the test and val splits.
    """
    first = {}
    for r in records:
        first.setdefault(r.identity_id, r.identity)
    rng = np.random.default_rng([seed, 0x5117])
    groups: dict[str, list[int]] = {}
    for i in sorted(first):
        rare = [n for n in ("bald", "pale_skin", "mustache", "chubby") if getattr(first[i], n)]
        groups.setdefault(rare[0] if rare else "", []).append(i)
    deal = (2, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    splits = {}
    for key in sorted(groups):
        members = [groups[key][j] for j in rng.permutation(len(groups[key]))]
        splits.update({identity: deal[k % 10] for k, identity in enumerate(members)})
    return splits
