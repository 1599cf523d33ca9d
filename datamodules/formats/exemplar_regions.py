"""The exemplar-faces twin's sidecar ``exemplar_faces.csv``: per image, its identity, the coarse and
detail identities it was rendered from, its nuisance draw and the boxes of its five detail regions.

Real CelebA has no such file; the twin writes it beside the official tables so that tests and the
analysis can mix coarse and detail codes, and the exemplar DataModule can occlude the detail
regions of an exemplar (spec hallucination.md section 9). Columns::

    image_id,identity,split,coarse_id,detail_id,male,eyeglasses,gain,dy,dx,mouth,
    direction_r,direction_g,direction_b,<region>_pattern,<region>_top,<region>_left,
    <region>_height,<region>_width  (for each region of REGION_NAMES)

Boxes are ``(top, left, height, width)`` in pixels of the 128 x 128 crop (rows 45-172, columns
25-152 of the aligned 178 x 218 image). The reader is strict: a missing column, a non-integer box
or an unlisted image is a ``FormatError`` naming the file and line.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch

from datamodules.formats.errors import FormatError
from datamodules.formats.text_tables import parse_int

SIDECAR_FILE = "exemplar_faces.csv"
REGION_NAMES = ("left_eye", "right_eye", "chin", "left_cheek", "right_cheek")
BOX_FIELDS = ("top", "left", "height", "width")
BOX_COLUMNS = tuple(f"{r}_{f}" for r in REGION_NAMES for f in BOX_FIELDS)


def write_sidecar(path: str | Path, rows: Sequence[dict[str, object]]) -> None:
    """Write the sidecar; every row holds the same keys (``image_id`` first)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_region_boxes(path: str | Path, names: Sequence[str]) -> torch.Tensor:
    """Region boxes of the images ``names``: long (N, len(REGION_NAMES), 4) in crop pixels.

    Raises:
        FormatError: The header lacks ``image_id`` or a box column, a box value is not a
            non-negative integer, an image repeats, or one of ``names`` has no row.
    """
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("image_id", *BOX_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise FormatError(path, f"missing column(s) {missing}", 1)
        boxes: dict[str, tuple[int, list[int]]] = {}
        for line, row in enumerate(reader, start=2):
            name = row["image_id"]
            if name in boxes:
                raise FormatError(
                    path, f"image {name} repeats (first at line {boxes[name][0]})", line
                )
            values = [parse_int(path, row[c] or "", c, line) for c in BOX_COLUMNS]
            if min(values) < 0:
                raise FormatError(path, f"negative box value for {name}", line)
            boxes[name] = (line, values)
    absent = next((n for n in names if n not in boxes), None)
    if absent is not None:
        raise FormatError(path, f"{absent} has no row (the sidecar must list every image)")
    table = torch.tensor([boxes[n][1] for n in names], dtype=torch.long)
    return table.reshape(len(names), len(REGION_NAMES), len(BOX_FIELDS))
