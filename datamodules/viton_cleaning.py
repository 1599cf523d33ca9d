"""VITON's duplicate cleaning (UST spec, section 2): one pair per distinct catalog item.

VITON lists many items more than once under different names. Over train and test together, each
pair is keyed by its cloth image, and two pairs are duplicates when their cloth images are

- exactly equal: the same md5 of the decoded pixels, or
- near-equal: 64-bit dHashes at Hamming distance <= 4 AND mean |difference| < 2/255 over the RGB
  thumbnails (64 x 48, area resampling, rounded to uint8, values scaled to [0, 1]).

Duplicates are grouped transitively. Each group keeps one pair: its first train pair by file name
(cloth, then person) when it has one, else its first test pair; every other pair is dropped, so a
test item that duplicates a train item is dropped. The kept pairs are written, in their original
order, to ``clean_train_pairs.txt`` and ``clean_test_pairs.txt`` beside the originals, and what
was dropped and why to ``clean_report.json``. The paper cleaned VITON to 7,240 images per domain
(whether train and test together is not said; the count is logged beside it).

dHash: the thumbnail's luma (0.299 R + 0.587 G + 0.114 B) area-resampled to 9 x 8 (W x H); bit
``8 r + c`` (most significant first) is set when cell ``(r, c + 1)`` is brighter than ``(r, c)``.

Run it as ``make data DATASET=viton [ROOT=DIR]`` (``python -m datamodules.prepare viton``); it
also runs every check the DataModule's setup runs on every pair.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from rich.progress import track

from datamodules.formats.errors import FormatError
from datamodules.formats.viton import (
    SPLITS,
    Layout,
    Pair,
    check_pair_content,
    check_pair_files,
    cloth_files,
    detect_layout,
    missing_dataset,
    native_size,
    pairs_file,
    read_pairs,
    write_pairs,
)

THUMBNAIL = (64, 48)  # (H, W)
HASH_DISTANCE = 4
PIXEL_DISTANCE = 2 / 255
PAPER_PER_DOMAIN = 7240
REPORT_FILE = "clean_report.json"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (64, 48, 3), area resampling."""
    height, width = THUMBNAIL
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def dhash(thumb: np.ndarray) -> int:
    """The 64-bit difference hash of a uint8 (h, w, 3) image (module docstring)."""
    gray = thumb.astype(np.float32) @ _LUMA
    cells = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (cells[:, 1:] > cells[:, :-1]).reshape(-1)
    return int("".join("1" if b else "0" for b in bits), 2)


def pixel_digest(rgb: np.ndarray) -> str:
    """md5 of the decoded pixels (and their shape)."""
    return hashlib.md5(str(rgb.shape).encode() + np.ascontiguousarray(rgb).tobytes()).hexdigest()


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distances between uint64 hashes (broadcast)."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two uint8 thumbnails, on the [0, 1] scale."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() / 255)


def is_near_duplicate(a: np.ndarray, b: np.ndarray) -> bool:
    """The near rule on two decoded uint8 (H, W, 3) images (exact copies included)."""
    small_a, small_b = thumbnail(a), thumbnail(b)
    close = hamming(np.uint64(dhash(small_a)), np.uint64(dhash(small_b))) <= HASH_DISTANCE
    return bool(close) and mean_abs_difference(small_a, small_b) < PIXEL_DISTANCE


def duplicate_edges(
    digests: list[str], hashes: np.ndarray, thumbs: np.ndarray, block: int = 256
) -> list[tuple[int, int, str]]:
    """Every duplicate relation ``(i, j, 'exact' | 'near')``, i < j, among N cloth images.

    Args:
        digests: Pixel md5 per image.
        hashes: uint64 (N,) dHashes.
        thumbs: uint8 (N, 64, 48, 3) thumbnails.
        block: Rows of the Hamming-distance matrix computed at once.
    """
    edges, first = [], {}
    for i, digest in enumerate(digests):
        if digest in first:
            edges.append((first[digest], i, "exact"))
        else:
            first[digest] = i
    hashes = np.asarray(hashes, dtype=np.uint64)
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        close = hamming(rows[:, None], hashes[None, :]) <= HASH_DISTANCE
        for r, j in zip(*np.nonzero(close), strict=True):
            i = start + int(r)
            if j <= i or digests[i] == digests[j]:
                continue
            if mean_abs_difference(thumbs[i], thumbs[j]) < PIXEL_DISTANCE:
                edges.append((i, int(j), "near"))
    return edges


def duplicate_groups(count: int, edges: list[tuple[int, int, str]]) -> list[list[int]]:
    """Connected components of the duplicate relation with two or more members (union-find)."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in edges:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return [members for members in groups.values() if len(members) > 1]


@dataclass
class Entry:
    """One pair of train or test with its cloth image's fingerprint."""

    split: str
    pair: Pair
    digest: str = ""
    hash: int = 0
    thumb: np.ndarray | None = None

    @property
    def order(self) -> tuple[int, str, str]:
        """Which pair of a duplicate group is kept: train first, then by file name."""
        return SPLITS.index(self.split), self.pair.cloth, self.pair.person


@dataclass
class CleanReport:
    """What the cleaning kept and dropped."""

    original: dict[str, int]
    kept: dict[str, list[Pair]]
    dropped: list[dict] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)

    def counts(self) -> dict:
        kinds = [d["kind"] for d in self.dropped]
        test_of_train = sum(
            d["split"] == "test" and d["kept_split"] == "train" for d in self.dropped
        )
        kept = {split: len(pairs) for split, pairs in self.kept.items()}
        return {
            "original": self.original,
            "kept": kept,
            "kept_total": sum(kept.values()),
            "dropped_exact": kinds.count("exact"),
            "dropped_near": kinds.count("near"),
            "dropped_test_duplicating_train": test_of_train,
            "invalid": len(self.invalid),
            "paper_per_domain": PAPER_PER_DOMAIN,
        }

    def summary(self) -> list[str]:
        """Lines for the log: counts per split beside the paper's 7,240 per domain."""
        c = self.counts()
        lines = [f"  {s}: {c['original'][s]} pairs -> {c['kept'][s]} kept" for s in self.kept]
        lines.append(
            f"  dropped: {c['dropped_exact']} exact and {c['dropped_near']} near duplicates "
            f"({c['dropped_test_duplicating_train']} test items duplicating a train item)"
        )
        if c["invalid"]:
            lines.append(f"  dropped as invalid (--drop-invalid): {c['invalid']}")
        lines.append(
            f"  per domain (persons = items, train + test): {c['kept_total']} "
            f"(paper: {PAPER_PER_DOMAIN:,} per domain after its cleaning)"
        )
        return lines


def clean_viton(
    root: str | Path,
    layout: Layout | None = None,
    size: tuple[int, int] | None = None,
    drop_invalid: bool = False,
    progress: bool = True,
) -> CleanReport:
    """Check every pair, find duplicate items, write the clean pair lists and the report.

    Args:
        root: The VITON root (CP-VTON or VITON-HD layout).
        layout: The layout; None detects it.
        size: (H, W) every image must have; None takes the twin's or the layout's (256 x 192,
            VITON-HD 1024 x 768).
        drop_invalid: Leave out (and report) pairs that fail a check instead of stopping.
        progress: Show a progress bar.

    Raises:
        DatasetNotFoundError: The root or a pairs file is missing.
        FormatError: A pair fails a check (unless ``drop_invalid``), naming the file and line.
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    size = tuple(size or native_size(root, layout))
    entries: list[Entry] = []
    report = CleanReport({}, {})
    for split in SPLITS:
        path = pairs_file(root, split, clean=False)
        if not path.is_file():
            raise missing_dataset(root, path)
        pairs = read_pairs(path)
        report.original[split] = len(pairs)
        entries += [Entry(split, pair) for pair in pairs]
    cache: dict[Path, tuple[str, int, np.ndarray]] = {}
    valid = []
    steps = track(entries, description="VITON: checking pairs", disable=not progress)
    for entry in steps:
        try:
            _fingerprint(root, layout, size, entry, cache)
        except FormatError as err:
            if not drop_invalid:
                raise
            report.invalid.append({**_describe(entry), "error": str(err)})
            continue
        valid.append(entry)
    hashes = np.array([e.hash for e in valid], dtype=np.uint64)
    thumbs = np.stack([e.thumb for e in valid]) if valid else np.zeros((0, *THUMBNAIL, 3))
    edges = duplicate_edges([e.digest for e in valid], hashes, thumbs)
    dropped = set()
    for members in duplicate_groups(len(valid), edges):
        keep = min(members, key=lambda i: valid[i].order)
        for i in members:
            if i != keep:
                dropped.add(i)
                kind = "exact" if valid[i].digest == valid[keep].digest else "near"
                report.dropped.append(
                    {**_describe(valid[i]), "kind": kind, **_describe(valid[keep], "kept_")}
                )
    for split in SPLITS:
        report.kept[split] = [
            e.pair for i, e in enumerate(valid) if e.split == split and i not in dropped
        ]
        write_pairs(
            pairs_file(root, split, clean=True), [(p.person, p.cloth) for p in report.kept[split]]
        )
    report.dropped.sort(key=lambda d: (SPLITS.index(d["split"]), d["line"]))
    document = {
        **report.counts(),
        "dropped_pairs": report.dropped,
        "invalid_pairs": report.invalid,
        "rule": {
            "hash_distance": HASH_DISTANCE,
            "pixel_distance": PIXEL_DISTANCE,
            "thumbnail": list(THUMBNAIL),
            "layout": layout.name,
        },
    }
    (root / REPORT_FILE).write_text(json.dumps(document, indent=1) + "\n")
    logging.getLogger(__name__).info("VITON cleaned at %s:\n%s", root, "\n".join(report.summary()))
    return report


def _fingerprint(root: Path, layout: Layout, size, entry: Entry, cache: dict) -> None:
    split, pair = entry.split, entry.pair
    check_pair_files(root, split, layout, [pair])
    check_pair_content(root, split, layout, pair, size)
    path = cloth_files(root, split, pair.cloth)["cloth"]
    if path not in cache:
        try:
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
        except OSError as err:
            raise FormatError(pair.source, f"{path}: cannot read image: {err}", pair.line) from None
        small = thumbnail(rgb)
        cache[path] = (pixel_digest(rgb), dhash(small), small)
    entry.digest, entry.hash, entry.thumb = cache[path]


def _describe(entry: Entry, prefix: str = "") -> dict:
    return {
        f"{prefix}split": entry.split,
        f"{prefix}person": entry.pair.person,
        f"{prefix}cloth": entry.pair.cloth,
        f"{prefix}line": entry.pair.line,
    }
