"""Write the synthetic faces in CelebA's, FFHQ's and a VoxCeleb-like clip tree's on-disk formats
(see specs/synthetic_faces.md).

``write_synthetic_faces(out)`` produces::

    out/celeba/img_align_celeba/000001.jpg ...   178 x 218, JPEG quality 95, no chroma subsampling
    out/celeba/list_attr_celeba.txt  list_eval_partition.txt  identity_CelebA.txt
    out/celeba/list_bbox_celeba.txt  list_landmarks_align_celeba.txt
    out/celeba/synthetic_factors.csv  synthetic_attributes.csv      (sidecars, tests only)
    out/ffhq/images1024x1024/00000/00000.png ...                    tighter framing (x1.3)
    out/ffhq/synthetic_factors.csv  synthetic_attributes.csv
    out/vox/id00001/clip00/00000.jpg ...         the CelebA twin's clips, as a clip tree
    out/vox/list_landmarks_align.txt              (datamodules.formats.clip_tree)
    out/synthetic_faces.json                      what wrote the twin (ensure_twin reads it)

The clip tree ``vox/`` holds the training-split identities of the CelebA twin that have clips (every
identity of the preset: ``clips`` x ``frames`` images; not the few small identities), one folder
``id%05d`` per identity (its CelebA identity number), ``clip%02d`` per clip and ``%05d.jpg`` per
frame (the sidecar's ``identity``, ``clip`` and ``frame`` columns). A frame is the CelebA twin's
JPEG itself (a hard link, else a copy: the same bytes), so a clip-tree frame and its CelebA image
are one picture, and its landmark row is the CelebA row. Only training identities, because the
tree serves Stage B's style source: like real VoxCeleb it must not hold the CelebA evaluation
identities.

Sidecars: ``synthetic_factors.csv`` has one row per image (image id, identity, clip, frame, split,
pose, expression, identity traits, style, detail seed, and all 40 attributes as 0/1);
``synthetic_attributes.csv`` says for each attribute whether it is rendered, its level, designed
prevalence and region box. Output bytes depend only on ``preset``, ``seed`` and ``ffhq_size``
(``vox/`` frames are hard links or copies: the same bytes either way).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from datamodules.formats import celeba as celeba_format
from datamodules.formats import clip_tree
from datamodules.formats.ffhq import IMAGES_1024, image_relpath
from datamodules.synthetic.face_factors import (
    ATTRIBUTE_ORDER,
    ATTRIBUTE_SPECS,
    NEGATIVE_CONTROLS,
    RENDERED_ATTRIBUTES,
    DetailCode,
    Expression,
    Identity,
    Pose,
    Style,
    with_attribute,
)
from datamodules.synthetic.face_geometry import FRAME
from datamodules.synthetic.face_io import render_chunk, render_record
from datamodules.synthetic.face_render import render
from datamodules.synthetic.face_sampling import FaceRecord, assign_splits, plan_faces, plan_identity
from datamodules.synthetic.line_progress import LineProgress

__all__ = [
    "NEGATIVE_CONTROLS",
    "PRESETS",
    "RENDERED_ATTRIBUTES",
    "DetailCode",
    "Expression",
    "FacePreset",
    "Identity",
    "Pose",
    "Style",
    "render",
    "render_record",
    "with_attribute",
    "write_synthetic_faces",
]  # the factors and renderer are re-exported so face methods need one import

FFHQ_FRAMING = 1.3
MANIFEST_FILE = "synthetic_faces.json"  # in <out>: what wrote the twin (renderer hash, preset)
FFHQ_FIRST_ID = 1_000_000
LAYOUTS = ("celeba", "ffhq", "vox")  # the folders under <out>; in the manifest
VOX_SPLITS = (0,)  # CelebA-twin splits whose identities the clip tree holds: train only
_CHUNK = 32
if ATTRIBUTE_ORDER != celeba_format.ATTRIBUTE_NAMES:
    raise ImportError("face_factors.ATTRIBUTE_ORDER must be CelebA's official attribute order")


@dataclass(frozen=True)
class FacePreset:
    """Sizes of one preset: ``identities`` x ``clips`` x ``frames`` images plus
    ``small_identities`` with 3-4 images, and ``ffhq_images`` FFHQ-layout images."""

    identities: int
    clips: int
    frames: int
    small_identities: int
    ffhq_images: int
    ffhq_size: int


# ``small`` keeps both hard rules of the spec (300+ identities with 10+ images each, every
# identity 4+ clips of 5+ frames), which needs 20 images per identity: about 6k images, not 3k.
PRESETS: dict[str, FacePreset] = {
    "tiny": FacePreset(32, 2, 5, 3, 24, 256),  # 330 images, for tests
    "small": FacePreset(300, 4, 5, 5, 200, 1024),  # 6,017 images
    "default": FacePreset(1000, 4, 5, 10, 1000, 1024),  # 20,035 images
}


def write_synthetic_faces(
    out: str | Path,
    preset: str = "small",
    seed: int = 0,
    ffhq_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Render and write the CelebA and FFHQ twins and the clip tree under ``out``.

    Args:
        out: output folder (``celeba/``, ``ffhq/`` and ``vox/`` are created inside).
        preset: ``tiny`` (tests, seconds), ``small`` or ``default``; see :data:`PRESETS`.
        seed: the only source of randomness; the same seed gives the same bytes.
        ffhq_size: FFHQ image side; ``None`` takes the preset's (256 for tiny, else 1024).
        workers: rendering processes; ``None`` uses one for tiny, else up to 8 CPU cores.
        progress: show a rich progress bar.

    Returns:
        Summary: preset, seed, image and identity counts per layout, split sizes, seconds.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    size = ffhq_size or cfg.ffhq_size
    if workers is None:
        workers = 1 if preset == "tiny" else max(1, min(8, multiprocessing.cpu_count()))
    start = time.perf_counter()
    out = Path(out)
    celeba = plan_faces(seed, cfg.identities, cfg.clips, cfg.frames, cfg.small_identities)
    ffhq = [plan_identity(seed, FFHQ_FIRST_ID + i, [1])[0] for i in range(cfg.ffhq_images)]
    with _progress(progress) as bar, _pool(workers) as pool:
        splits, landmarks = _write_celeba(out / "celeba", celeba, seed, pool, bar)
        _write_ffhq(out / "ffhq", ffhq, size, pool, bar)
    clipped = cfg.identities * cfg.clips * cfg.frames  # the first records; the rest are small
    vox = _write_vox(out / "vox", out / "celeba", celeba[:clipped], landmarks, splits)
    (out / MANIFEST_FILE).write_text(json.dumps(twin_fingerprint(preset, seed, size), indent=2))
    return {
        "preset": preset,
        "seed": seed,
        "celeba": {
            "root": str(out / "celeba"),
            "images": len(celeba),
            "identities": len(splits),
            "split_identities": [sum(s == k for s in splits.values()) for k in range(3)],
        },
        "ffhq": {"root": str(out / "ffhq"), "images": len(ffhq), "size": size},
        "vox": {"root": str(out / "vox"), **vox},
        "seconds": round(time.perf_counter() - start, 2),
    }


def _write_celeba(
    root: Path, records: list[FaceRecord], seed: int, pool, bar
) -> tuple[dict[int, int], torch.Tensor]:
    """Images, the five official annotation files and the sidecars; returns identity -> split
    and the (N, 10) landmarks written."""
    image_dir = root / celeba_format.IMAGE_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    names = [celeba_format.image_name(i + 1) for i in range(len(records))]
    jobs = [("jpg", image_dir / n, r, FRAME, 1.0) for n, r in zip(names, records, strict=True)]
    geometry = _run(jobs, pool, bar, "CelebA twin")
    splits = assign_splits(records, seed)
    attrs = torch.tensor(
        [[r.attributes[a] for a in celeba_format.ATTRIBUTE_NAMES] for r in records]
    )
    celeba_format.write_attribute_table(root / celeba_format.ATTR_FILE, names, attrs.long())
    celeba_format.write_partition(
        root / celeba_format.PARTITION_FILE, names, [splits[r.identity_id] for r in records]
    )
    celeba_format.write_identities(
        root / celeba_format.IDENTITY_FILE, names, [r.identity_id for r in records]
    )
    celeba_format.write_landmarks(root / celeba_format.LANDMARK_FILE, names, geometry[:, :10])
    celeba_format.write_bboxes(root / celeba_format.BBOX_FILE, names, geometry[:, 10:])
    _write_sidecars(root, names, records, [splits[r.identity_id] for r in records])
    return splits, geometry[:, :10]


def _write_vox(
    root: Path,
    celeba: Path,
    records: list[FaceRecord],
    landmarks: torch.Tensor,
    splits: dict[int, int],
) -> dict:
    """The clip tree of ``records`` (the CelebA twin's first images, in order) whose identities
    are in ``VOX_SPLITS``: links to the CelebA JPEGs and their landmark rows; returns counts."""
    keep = [i for i, r in enumerate(records) if splits[r.identity_id] in VOX_SPLITS]
    image_dir = celeba / celeba_format.IMAGE_DIR
    sources = [image_dir / celeba_format.image_name(i + 1) for i in keep]
    paths = [
        clip_tree.frame_path(
            f"id{records[i].identity_id:05d}",
            f"clip{records[i].clip:02d}",
            f"{records[i].frame:05d}",
        )
        for i in keep
    ]
    clip_tree.write_clip_tree(root, sources, paths, landmarks[keep])
    return {
        "images": len(keep),
        "identities": len({records[i].identity_id for i in keep}),
        "clips": len({(records[i].identity_id, records[i].clip) for i in keep}),
    }


def _write_ffhq(root: Path, records: list[FaceRecord], size: int, pool, bar) -> None:
    """FFHQ-layout PNGs (no labels in the layout) and the sidecars."""
    rel = [image_relpath(i, IMAGES_1024) for i in range(len(records))]
    for folder in {r.parent for r in rel}:
        (root / folder).mkdir(parents=True, exist_ok=True)
    jobs = [
        ("png", root / p, r, (size, size), FFHQ_FRAMING) for p, r in zip(rel, records, strict=True)
    ]
    _run(jobs, pool, bar, "FFHQ twin")
    _write_sidecars(root, [p.as_posix() for p in rel], records, [-1] * len(records))


@contextlib.contextmanager
def _pool(workers: int):
    """A process pool (spawned: forked children can deadlock in OpenCV's thread pool), or None."""
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        yield pool


def _run(jobs: list, pool, bar, label: str) -> torch.Tensor:
    """Render and save every job (in ``pool`` if given); (N, 14) landmarks and boxes."""
    chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    task = bar.add_task(label, total=len(jobs))
    results = []
    for part in pool.imap(render_chunk, chunks) if pool else map(render_chunk, chunks):
        results.append(part)
        bar.advance(task, len(part))
    return torch.from_numpy(np.concatenate(results)) if results else torch.zeros(0, 14)


_POSE = ("yaw", "pitch", "roll", "dx", "dy", "scale", "exposure", "blurry")


def _columns(record: FaceRecord) -> dict[str, object]:
    """The sidecar row of one record (without image id and split)."""
    row: dict[str, object] = {
        "identity": record.identity_id,
        "clip": record.clip,
        "frame": record.frame,
    }
    row.update({k: getattr(record.pose, k) for k in _POSE})
    e = record.expression
    row.update(valence=e.valence, arousal=e.arousal, expression=e.category)
    ident = dataclasses.asdict(record.identity)
    row["detail_seed"] = ident.pop("detail")["seed"]
    row.update({f"id_{k}": v for k, v in ident.items()})
    row.update({f"style_{k}": v for k, v in dataclasses.asdict(record.style).items()})
    row.update(record.attributes)
    return {
        k: (f"{v:.6g}" if isinstance(v, float) else int(v) if isinstance(v, bool) else v)
        for k, v in row.items()
    }


def _write_sidecars(
    root: Path, ids: list[str], records: list[FaceRecord], splits: list[int]
) -> None:
    """``synthetic_factors.csv`` (one row per image) and ``synthetic_attributes.csv``."""
    rows = [
        {"image_id": i, "split": s, **_columns(r)}
        for i, r, s in zip(ids, records, splits, strict=True)
    ]
    with open(root / "synthetic_factors.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["image_id"])
        writer.writeheader()
        writer.writerows(rows)
    with open(root / "synthetic_attributes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "rendered", "level", "prevalence", "x0", "y0", "x1", "y1"])
        for name in ATTRIBUTE_ORDER:
            s = ATTRIBUTE_SPECS[name]
            writer.writerow([name, int(s.rendered), s.level, s.prevalence, *s.region])


def _progress(enabled: bool) -> Progress | LineProgress:
    """A rich bar on a terminal; in a log file (Slurm, nohup, a pipe) plain lines."""
    if enabled and not sys.stdout.isatty():
        return LineProgress()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def twin_fingerprint(preset: str, seed: int, ffhq_size: int | None = None) -> dict:
    """What a written twin depends on: preset, seed, FFHQ size, the layouts written and a hash of
    the renderer's code (a twin written before ``vox/`` existed differs, so it is rewritten)."""
    sources = sorted(Path(__file__).parent.glob("face*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    size = ffhq_size or PRESETS[preset].ffhq_size
    return {
        "preset": preset,
        "seed": seed,
        "ffhq_size": size,
        "layouts": list(LAYOUTS),
        "renderer_sha256": digest,
    }


def ensure_twin(root: Path, layout: str, preset: str, seed: int, present: bool) -> None:
    """Write the face twin whose ``<layout>`` folder is ``root`` unless an up-to-date one is there.

    Called by the CelebA and FFHQ DataModules when their ``synthetic`` option is set: the twin is
    always asked for, never substituted. Data without our manifest beside it is left alone; a twin
    written by another renderer version, preset or seed is rewritten, loudly.
    """
    if root.name != layout:
        raise ValueError(
            f"synthetic={preset!r} writes the twin to <out>/{layout}, so root must end in "
            f"{layout!r}, got {root}"
        )
    manifest = root.parent / MANIFEST_FILE
    log = logging.getLogger(__name__)
    if present:
        if not manifest.exists() or json.loads(manifest.read_text()) == twin_fingerprint(
            preset, seed
        ):
            return
        log.warning("SYNTHETIC DATA: %s was written by another renderer or preset: rewriting", root)
    log.warning(
        "SYNTHETIC DATA: writing the synthetic face twin (preset %r, seed %d) to %s for %s. "
        "These are rendered faces, not the real dataset.",
        preset,
        seed,
        root.parent,
        root,
    )
    write_synthetic_faces(root.parent, preset=preset, seed=seed)
