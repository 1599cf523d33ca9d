"""The factor oracle of the disentangle spec (section 9): a small CNN that reads a synthetic face's
ground-truth factors. A test instrument, not the method: the AAE's swap and reconstruction tests
ask it which pose, identity, expression and style a decoded image shows.

It reads the twin's sidecar ``<root>/celeba/synthetic_factors.csv`` (tests only), z-scores every
factor column with the train split's statistics, and regresses all columns of the four groups
from the AAE's CPU-tier input: the 128 x 128 face crop at (x=25, y=45) of the 178 x 218 image
(``CROP_BOXES["face128"]``) resized to ``image_size`` (64 or 32 px, the AAE's two CPU tiers), in
[-1, 1]. It trains on the official train split, optionally with fresh in-memory renders of new
identities (the twin's ~240 train identities are too few to learn identity traits from, see
:func:`train_oracle`), and is scored on the test split (identity-disjoint on the twin).

Column choices (only continuous factors; flags and category names are left out):

- Hues are circular, so each becomes ``<name>_cos`` / ``<name>_sin`` of ``2 pi hue``.
- The background gradient and the light are vectors: ``<name>_x`` / ``<name>_y`` are
  ``strength * (cos, sin)(angle)`` (an angle means nothing at zero strength; the renderer's
  gain field and gradient are linear in these two numbers). Mirroring an image negates the
  ``_x`` parts, as it negates yaw and roll.
- Camera nuisances (dx, dy, scale, exposure) belong to no group.
- A column joins a group only if the oracle can read it (held-out R^2 > 0.5 at the measured
  budget); :data:`CANDIDATE_GROUPS` lists every column that was measured, and the comments of
  :data:`FACTOR_GROUPS` give the numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.io import decode_jpeg

from datamodules.celeba import CROP_BOXES
from datamodules.formats.celeba import IMAGE_DIR, PARTITION_FILE, read_partition
from datamodules.images import read_rgb, square_transform
from datamodules.synthetic.face_io import render_record
from datamodules.synthetic.face_sampling import FaceRecord, plan_faces
from datamodules.synthetic.faces import MANIFEST_FILE, twin_fingerprint

__all__ = [
    "CANDIDATE_GROUPS",
    "FACTOR_GROUPS",
    "IMAGE_SIZES",
    "MIRRORED_COLUMNS",
    "FactorOracle",
    "load_crops",
    "mirror_targets",
    "read_factors",
    "record_table",
    "render_crops",
    "train_oracle",
]

SIDECAR_FILE = "synthetic_factors.csv"
IMAGE_SIZES = (32, 64)  # the AAE's CPU tiers; the oracle pools either to a 4 x 4 map
ORACLE_VERSION = 1  # bump when training changes in a way the settings do not show
FRESH_FIRST_ID = 10_000_000  # fresh identities' ids: far from the twin's CelebA and FFHQ ids
JPEG_SETTINGS = {"quality": 95, "subsampling": 0}  # as the twin writer saves its CelebA images
_HUES = ("style_bg_hue", "style_clothes_hue", "style_accessory_hue")
_VECTORS = {  # derived name -> (strength column, angle column in radians)
    "style_bg_gradient": ("style_bg_strength", "style_bg_angle"),
    "style_light": ("style_light_strength", "style_light_angle"),
}

CANDIDATE_GROUPS: dict[str, tuple[str, ...]] = {
    "pose": ("yaw", "pitch", "roll"),
    "identity": (
        "id_face_width",
        "id_face_aspect",
        "id_jaw",
        "id_skin_tone",
        "id_eye_spacing",
        "id_eye_size",
        "id_nose_length",
        "id_nose_width",
        "id_mouth_width",
        "id_lip_size",
        "id_iris_hue",
        "id_hair_shade",
    ),
    "expression": ("valence", "arousal"),
    "style": (
        "style_bg_hue_cos",
        "style_bg_hue_sin",
        "style_bg_gradient_x",
        "style_bg_gradient_y",
        "style_bg_strength",
        "style_light_x",
        "style_light_y",
        "style_light_strength",
        "style_clothes_hue_cos",
        "style_clothes_hue_sin",
        "style_accessory_hue_cos",
        "style_accessory_hue_sin",
    ),
}
# Held-out R^2 per column on the small twin's test split (660 images) of the oracles the slow
# tests train (twin train split + 9,000 fresh renders, 5 epochs, batch 32, seed 0, on one CPU
# thread ~4 min at 64 px, ~3 at 32 px), given as "64 px | 32 px". Left out as unreadable at 64 px
# in a CPU budget (R^2 < 0.5; exploration runs over all of CANDIDATE_GROUPS, twin + 7,000
# renders, 5 epochs, batch 64): id_jaw -0.09 (for women 0.05 * jaw: almost no visible effect),
# the small geometric traits id_eye_spacing -0.02, id_nose_length -0.06, id_nose_width -0.05,
# id_mouth_width -0.03, id_lip_size -0.05 (ranges of 1-3 px at 64 px, masked by yaw
# foreshortening, head scale, Big_Nose, Big_Lips and smiling), id_face_aspect 0.36 and
# id_hair_shade 0.43 (0.48 and 0.57 with 12,000 renders and 6 epochs: more training helps),
# style_clothes_hue_* (the clothes lie below the crop) and style_accessory_hue_* (seen only on the
# rare hats, glasses and makeup), all about 0. At 32 px (all of CANDIDATE_GROUPS, the slow test's
# budget) the same columns stay unreadable (id_face_aspect 0.44, id_hair_shade 0.45, the others
# -0.10 to 0.00) and every column below stays readable, so both sizes share these groups.
FACTOR_GROUPS: dict[str, tuple[str, ...]] = {
    "pose": ("yaw", "pitch", "roll"),  # 0.97, 0.95, 0.95 | 0.97, 0.94, 0.95
    # pose MAE: 1.9, 1.5, 1.1 deg | 2.0, 1.7, 1.2 deg
    "identity": (
        "id_face_width",  # 0.66 | 0.66
        "id_skin_tone",  # 0.88 | 0.88 (Pale_Skin hides it for 5% of identities)
        "id_eye_size",  # 0.75 | 0.65
        "id_iris_hue",  # 0.80 | 0.77
    ),
    "expression": ("valence", "arousal"),  # 0.81, 0.90 | 0.80, 0.88
    "style": (
        "style_bg_hue_cos",  # 0.99 | 0.99
        "style_bg_hue_sin",  # 0.99 | 0.99
        "style_bg_gradient_x",  # 0.97 | 0.97
        "style_bg_gradient_y",  # 0.88 | 0.87
        "style_bg_strength",  # 0.91 | 0.90 (also darkens the gradient's second colour)
        "style_light_x",  # 0.97 | 0.96
        "style_light_y",  # 0.95 | 0.96
        "style_light_strength",  # 0.88 | 0.89
    ),
}
MIRRORED_COLUMNS = frozenset({"yaw", "roll", "style_bg_gradient_x", "style_light_x"})


def _sidecar(celeba_root: Path) -> dict[str, list[str]]:
    """The sidecar's columns as lists of strings, in file order."""
    path = celeba_root / SIDECAR_FILE
    if not path.is_file():
        raise ValueError(f"{celeba_root} has no {SIDECAR_FILE}: not a synthetic face twin")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    return {name: [row[name] for row in rows] for name in rows[0]}


def _column(table: dict[str, list], name: str) -> np.ndarray:
    """(N,) float64 values of a sidecar column or a derived one (_cos/_sin, _x/_y)."""
    if name in table:
        return np.asarray(table[name], dtype=np.float64)
    base, _, part = name.rpartition("_")
    if base in _HUES and part in ("cos", "sin"):
        turn = 2 * np.pi * np.asarray(table[base], dtype=np.float64)
        return np.cos(turn) if part == "cos" else np.sin(turn)
    if base in _VECTORS and part in ("x", "y"):
        strength, angle = (np.asarray(table[c], dtype=np.float64) for c in _VECTORS[base])
        return strength * (np.cos(angle) if part == "x" else np.sin(angle))
    raise ValueError(f"unknown factor column {name!r}")


def read_factors(
    celeba_root: str | Path, groups: dict[str, tuple[str, ...]] | None = None
) -> tuple[list[str], dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Every image's factors, z-scored per column with the train split's mean and std.

    Args:
        celeba_root: The twin's ``celeba`` folder (with ``synthetic_factors.csv`` and the
            official ``list_eval_partition.txt``).
        groups: group -> columns; None takes :data:`FACTOR_GROUPS`.

    Returns:
        ``(image_ids, factors, stats)``: image file names in sidecar order; group -> float32
        (N, d) z-scored values; group -> ``(mean (d,), std (d,))`` float64 of the raw train
        values (``raw = z * std + mean``).
    """
    root = Path(celeba_root)
    groups = FACTOR_GROUPS if groups is None else groups
    table = _sidecar(root)
    image_ids = table["image_id"]
    partition = read_partition(root / PARTITION_FILE)
    missing = [i for i in image_ids if i not in partition]
    if missing:
        raise ValueError(f"{len(missing)} sidecar images lack a split, e.g. {missing[0]!r}")
    train = np.array([partition[i] == 0 for i in image_ids])
    if train.sum() < 2:
        raise ValueError(f"{root} has {int(train.sum())} train images; z-scoring needs 2")
    factors, stats = {}, {}
    for group, columns in groups.items():
        raw = np.stack([_column(table, c) for c in columns], 1)  # (N, d)
        mean, std = raw[train].mean(0), raw[train].std(0)
        if (std == 0).any():
            flat = [c for c, s in zip(columns, std, strict=True) if s == 0]
            raise ValueError(f"columns {flat} are constant on the train split")
        factors[group] = ((raw - mean) / std).astype(np.float32)
        stats[group] = (mean, std)
    return image_ids, factors, stats


def load_crops(celeba_root: str | Path, image_ids: list[str], image_size: int = 64) -> Tensor:
    """The oracle's (and the AAE CPU tier's) input: (N, 3, S, S) float in [-1, 1].

    Args:
        celeba_root: The twin's ``celeba`` folder.
        image_ids: File names under ``img_align_celeba/``.
        image_size: Side S the 128 px face crop is resized to (bilinear, antialiased).
    """
    transform = _crop_transform(image_size)
    images = torch.empty(len(image_ids), 3, image_size, image_size)
    for i, name in enumerate(image_ids):
        images[i] = _crop(read_rgb(Path(celeba_root) / IMAGE_DIR / name), transform)
    return images


def _crop_transform(image_size: int) -> Callable[[Tensor], Tensor]:
    """The AAE data's resize and [-1, 1] scaling, for a face crop of side ``image_size``."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return square_transform(image_size, normalize="signed")


def _crop(image: Tensor, transform: Callable[[Tensor], Tensor]) -> Tensor:
    """uint8 (3, 218, 178) aligned image -> float (3, S, S) face crop in [-1, 1]."""
    top, left, height, width = CROP_BOXES["face128"]
    return transform(image[:, top : top + height, left : left + width])


def render_crops(records: list[FaceRecord], image_size: int = 64) -> Tensor:
    """Render planned faces as the twin stores them (JPEG, 4:4:4) and cut the oracle's input.

    Args:
        records: Planned faces (``datamodules.synthetic.face_sampling.plan_faces``).
        image_size: Side S of the resized face crop.

    Returns:
        (N, 3, S, S) float in [-1, 1], like :func:`load_crops` of the written images.
    """
    transform = _crop_transform(image_size)
    images = torch.empty(len(records), 3, image_size, image_size)
    for i, record in enumerate(records):
        buffer = io.BytesIO()
        Image.fromarray(render_record(record)).save(buffer, format="JPEG", **JPEG_SETTINGS)
        data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
        images[i] = _crop(decode_jpeg(data), transform)
    return images


def record_table(records: list[FaceRecord]) -> dict[str, list[float]]:
    """The continuous sidecar columns (named as in ``synthetic_factors.csv``) of planned faces."""
    table: dict[str, list[float]] = {}
    for record in records:
        row = {k: getattr(record.pose, k) for k in ("yaw", "pitch", "roll")}
        row.update(valence=record.expression.valence, arousal=record.expression.arousal)
        for prefix, factor in (("id_", record.identity), ("style_", record.style)):
            for field in dataclasses.fields(factor):
                value = getattr(factor, field.name)
                if isinstance(value, float):
                    row[prefix + field.name] = value
        for name, value in row.items():
            table.setdefault(name, []).append(float(value))
    return table


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """3 x 3 conv-BN-ReLU, then (``pool``) a 2 x 2 max-pool: (B, c_in, S, S) -> (B, c_out, S/2,
    S/2), or (B, c_out, S, S) without.

    One conv per block: two per block trained about 4x slower on one CPU thread, which left too
    few epochs in the budget.
    """
    layers = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class FactorOracle(nn.Module):
    """Four conv blocks pooling the image to 4 x 4 and a two-layer head regressing every column.

    At 64 px every block pools (64 -> 4 px). At 32 px the first block keeps the size (32, 32, 16,
    8 -> 4 px), so blocks two to four see the same resolutions as at 64 px. Measured at 32 px
    (all of :data:`CANDIDATE_GROUPS`, the slow test's budget and seed), against pooling in all
    four blocks (a 2 x 2 map) and in the first three only (4 x 4 from coarser features): pose
    MAE 2.0 / 1.7 / 1.3 deg against 2.5 / 1.9 / 1.5 and 2.6 / 1.8 / 1.5, id_eye_size R^2 0.56
    against 0.14 and 0.21, every other readable column better but style_bg_strength (0.89 against
    0.89 and 0.90); training took 129 s against 54 s and 57 s on one thread.

    Args:
        groups: group -> columns, in output order.
        width: Channels of the first two blocks (the last two have twice as many).
        image_size: Side of the input images, one of :data:`IMAGE_SIZES`.
    """

    def __init__(
        self, groups: dict[str, tuple[str, ...]], width: int = 32, image_size: int = 64
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
        self.groups = {g: tuple(c) for g, c in groups.items()}
        self.image_size = image_size
        outputs = sum(len(c) for c in self.groups.values())
        if outputs == 0:
            raise ValueError(f"groups name no column: {groups}")
        kept = 4 - int(math.log2(image_size // 4))  # leading blocks that do not pool
        channels = [3, width, width, 2 * width, 2 * width]
        self.features = nn.Sequential(
            *(_block(channels[i], channels[i + 1], pool=i >= kept) for i in range(4))
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 4 * 4, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, outputs),
        )
        self.register_buffer("mean", torch.zeros(outputs, dtype=torch.float64))
        self.register_buffer("std", torch.ones(outputs, dtype=torch.float64))

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) in [-1, 1], S = ``image_size`` -> (B, D) z-scores of all groups."""
        size = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"images must be (B, 3, {size}, {size}), got {tuple(images.shape)}")
        return self.head(self.features(images))

    def split(self, predictions: Tensor) -> dict[str, Tensor]:
        """(B, D) -> group -> (B, d)."""
        widths = [len(c) for c in self.groups.values()]
        return dict(zip(self.groups, predictions.split(widths, 1), strict=True))

    @torch.no_grad()
    def read(self, images: Tensor, raw: bool = False, batch_size: int = 256) -> dict[str, Tensor]:
        """The factors an image shows, in eval mode.

        Args:
            images: (B, 3, S, S) in [-1, 1].
            raw: Return sidecar units (degrees for pose) instead of z-scores.
            batch_size: Images per forward pass.

        Returns:
            group -> (B, d) float32.
        """
        was_training = self.training
        self.eval()
        out = torch.cat([self(part) for part in images.split(batch_size)])  # (B, D)
        self.train(was_training)
        if raw:
            out = (out.double() * self.std + self.mean).float()
        return self.split(out)


def _manifest(celeba_root: Path) -> dict:
    """The twin's ``synthetic_faces.json`` (preset, seed, renderer hash)."""
    path = celeba_root.parent / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(f"{path} is missing: the oracle needs the synthetic twin's manifest")
    return json.loads(path.read_text())


def _zscores(
    table: dict[str, list],
    groups: dict[str, tuple[str, ...]],
    stats: dict[str, tuple[np.ndarray, np.ndarray]],
) -> Tensor:
    """(N, D) float32 z-scores of every group's columns, groups side by side."""
    parts = [
        (np.stack([_column(table, c) for c in columns], 1) - stats[g][0]) / stats[g][1]
        for g, columns in groups.items()
    ]
    return torch.from_numpy(np.concatenate(parts, 1)).float()


def mirror_targets(z: Tensor, columns: list[str], mean: Tensor, std: Tensor) -> Tensor:
    """The z-scores of the mirrored image: raw values of :data:`MIRRORED_COLUMNS` negated.

    Args:
        z: (B, D) z-scores, ``raw = z * std + mean``.
        columns: The D column names.
        mean: (D,) raw means.
        std: (D,) raw standard deviations.

    Returns:
        (B, D): ``(-raw - mean) / std = -z - 2 mean / std`` for mirrored columns, else ``z``.
    """
    if z.shape[-1] != len(columns):
        raise ValueError(f"z has {z.shape[-1]} columns, names given for {len(columns)}")
    mirrored = torch.tensor([c in MIRRORED_COLUMNS for c in columns])  # (D,)
    flipped = -z - (2 * mean / std).to(z.dtype)
    return torch.where(mirrored, flipped, z)


def _fit(
    oracle: FactorOracle,
    images: Tensor,
    targets: Tensor,
    mirror: bool,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """AdamW with a one-cycle schedule on the MSE of z-scored targets; with ``mirror`` half the
    images are flipped horizontally (their targets through :func:`mirror_targets`)."""
    columns = [c for cs in oracle.groups.values() for c in cs]
    steps = epochs * math.ceil(len(images) / batch_size)
    optimizer = torch.optim.AdamW(oracle.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    oracle.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for batch in order.split(batch_size):
            x, y = images[batch], targets[batch]  # (B, 3, S, S), (B, D)
            if mirror:
                flip = torch.rand(len(batch), generator=generator) < 0.5  # (B,)
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
                mirrored = mirror_targets(y, columns, oracle.mean, oracle.std)
                y = torch.where(flip[:, None], mirrored, y)
            loss = nn.functional.mse_loss(oracle(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


def _evaluate(oracle: FactorOracle, images: Tensor, targets: Tensor) -> dict:
    """Held-out R^2 per column and group (mean over the group's columns), pose MAE in degrees."""
    pred = torch.cat(list(oracle.read(images, raw=True).values()), 1).double()  # (M, D)
    true = targets.double() * oracle.std + oracle.mean  # (M, D)
    residual = ((true - pred) ** 2).sum(0)
    total = ((true - true.mean(0)) ** 2).sum(0)
    columns = [c for cs in oracle.groups.values() for c in cs]
    r2 = dict(zip(columns, (1 - residual / total).tolist(), strict=True))
    mae = dict(zip(columns, (true - pred).abs().mean(0).tolist(), strict=True))
    return {
        "r2": r2,
        "group_r2": {g: float(np.mean([r2[c] for c in cs])) for g, cs in oracle.groups.items()},
        "pose_mae_deg": {a: mae[a] for a in ("yaw", "pitch", "roll") if a in mae},
    }


def train_oracle(
    celeba_root: str | Path,
    epochs: int,
    seed: int,
    cache_dir: str | Path | None = None,
    *,
    fresh_images: int = 0,
    groups: dict[str, tuple[str, ...]] | None = None,
    width: int = 32,
    lr: float = 3e-3,
    batch_size: int = 32,
    mirror: bool = True,
    image_size: int = 64,
) -> tuple[FactorOracle, dict]:
    """Train the oracle on the twin's train split and score it on the test split.

    Args:
        celeba_root: The twin's ``celeba`` folder (its parent holds ``synthetic_faces.json``).
        epochs: Passes over the training images (>= 1).
        seed: Seeds the initialisation, shuffling and mirroring.
        cache_dir: If given, the trained oracle and its report are kept in
            ``cache_dir/factor_oracle-<key>.pt``, the key hashing the twin's manifest, the
            renderer's code and every setting here, so a changed twin or setting trains afresh;
            a hit skips training.
        fresh_images: Also train on this many images of new identities (one image each),
            rendered in memory with the twin's renderer and seed (identity ids from
            :data:`FRESH_FIRST_ID`, so none is a twin person). The twin's ~240 train identities
            are too few to learn the identity traits from; the test split stays the twin's.
        groups: group -> columns; None takes :data:`FACTOR_GROUPS`.
        width: Channels of the oracle's first block.
        lr: Peak learning rate of the one-cycle schedule.
        batch_size: Images per step (32: at 64 the activations outgrow glibc's reusable heap and
            page faults cost a third of the time on one thread).
        mirror: Flip half the training images, negating the :data:`MIRRORED_COLUMNS`.
        image_size: Side of the face crops the oracle reads, one of :data:`IMAGE_SIZES`.

    Returns:
        ``(oracle, report)``; the oracle is in eval mode, its ``mean``/``std`` buffers turn
        z-scores into sidecar units. ``report``: ``r2`` per column and ``group_r2`` per group
        (mean of its columns) on the test split, ``pose_mae_deg`` per angle, ``seconds`` of
        training (rendering included), ``train_images``, ``test_images``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (BatchNorm), got {batch_size}")
    if fresh_images < 0:
        raise ValueError(f"fresh_images must be >= 0, got {fresh_images}")
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
    root = Path(celeba_root)
    groups = {g: tuple(c) for g, c in (FACTOR_GROUPS if groups is None else groups).items()}
    manifest = _manifest(root)
    settings = {
        "epochs": epochs,
        "seed": seed,
        "fresh_images": fresh_images,
        "groups": groups,
        "width": width,
        "lr": lr,
        "batch_size": batch_size,
        "mirror": mirror,
        "image_size": image_size,
        "version": ORACLE_VERSION,
    }
    renderer = twin_fingerprint(manifest["preset"], manifest["seed"])["renderer_sha256"]
    content = {"manifest": manifest, "renderer": renderer, "settings": settings}
    key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    path = None if cache_dir is None else Path(cache_dir) / f"factor_oracle-{key[:16]}.pt"
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved["key"] == key:
            saved_groups = {g: tuple(c) for g, c in saved["groups"].items()}
            oracle = FactorOracle(saved_groups, width, image_size)
            oracle.load_state_dict(saved["state_dict"])
            return oracle.eval(), saved["report"]

    start = time.perf_counter()
    image_ids, factors, stats = read_factors(root, groups)
    targets = torch.from_numpy(np.concatenate([factors[g] for g in groups], 1))  # (N, D)
    partition = read_partition(root / PARTITION_FILE)
    split = torch.tensor([partition[i] for i in image_ids])
    train, test = (split == 0).nonzero()[:, 0], (split == 2).nonzero()[:, 0]
    if len(test) < 2:
        raise ValueError(f"{root} has {len(test)} test images; R^2 needs 2")
    images = load_crops(root, image_ids, image_size)
    train_images, train_targets = images[train], targets[train]
    if fresh_images:
        records = plan_faces(manifest["seed"], fresh_images, 1, 1, first_id=FRESH_FIRST_ID)
        train_images = torch.cat([train_images, render_crops(records, image_size)])
        train_targets = torch.cat([train_targets, _zscores(record_table(records), groups, stats)])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        oracle = FactorOracle(groups, width, image_size)
    oracle.mean.copy_(torch.from_numpy(np.concatenate([stats[g][0] for g in groups])))
    oracle.std.copy_(torch.from_numpy(np.concatenate([stats[g][1] for g in groups])))
    generator = torch.Generator().manual_seed(seed)
    _fit(oracle, train_images, train_targets, mirror, epochs, lr, batch_size, generator)
    report = _evaluate(oracle, images[test], targets[test])
    report.update(
        seconds=time.perf_counter() - start,
        train_images=len(train_images),
        test_images=len(test),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "key": key,
            "groups": {g: list(c) for g, c in groups.items()},
            "state_dict": oracle.state_dict(),
            "report": report,
        }
        torch.save(payload, path)
    return oracle.eval(), report
