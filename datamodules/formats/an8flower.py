"""The an8Flower-like layout (``datamodules.synthetic.an8flower`` writes it), read strictly.

One variant folder holds::

    classes.csv   cls,part,colour,r,g,b   class ids 0..C-1, each once; r, g, b in 0-255
    folds.csv     file,fold               file = images/<cls:02d>/<name>.png, fold in 0..4
    images/<cls:02d>/<name>.png           RGB
    masks/<cls:02d>/<name>.png            grey, 0 or 255 (the discriminative part)

The class of an image is its folder. ``read_an8flower`` checks the tables and that every listed
image and its mask exist and are not empty (one stat each); that a mask has its image's size and
only the values 0 and 255 is checked when the pair is read (``read_pair``), as the suite's other
readers check decoding. Every error is a ``FormatError`` naming the file and line at fault.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from datamodules.formats.errors import FormatError
from datamodules.formats.listed_files import check_listed_files
from datamodules.formats.text_tables import parse_int
from datamodules.images import read_rgb

CLASSES_FILE = "classes.csv"
FOLDS_FILE = "folds.csv"
CLASS_COLUMNS = ("cls", "part", "colour", "r", "g", "b")
FOLD_COLUMNS = ("file", "fold")
NUM_FOLDS = 5
_FILE = re.compile(r"images/(\d+)/([^/]+\.png)")


@dataclass(frozen=True)
class ClassRow:
    """A row of ``classes.csv``."""

    cls: int
    part: str
    colour: str
    rgb: tuple[int, int, int]


@dataclass
class An8FlowerIndex:
    """A variant folder, read.

    Attributes:
        root: The variant folder.
        files: Image paths relative to ``root`` (``images/<cls>/<name>.png``), in folds.csv order.
        labels: long (N,) class of each image.
        folds: long (N,) fold of each image, 0..4.
        classes: The class table, indexed by class id.
    """

    root: Path
    files: list[str]
    labels: torch.Tensor
    folds: torch.Tensor
    classes: list[ClassRow]

    def image_path(self, index: int) -> Path:
        return self.root / self.files[index]

    def mask_path(self, index: int) -> Path:
        """``masks/`` instead of ``images/``, the rest of the path the same."""
        return self.root / "masks" / self.files[index].removeprefix("images/")


def read_an8flower(root: str | Path) -> An8FlowerIndex:
    """Read ``classes.csv`` and ``folds.csv`` of the variant folder ``root`` and check that every
    listed image and mask exists and is not empty.

    Raises:
        FormatError: A missing column, a non-integer or out-of-range value, a class listed twice or
            class ids not 0..C-1, a file not shaped ``images/<cls>/<name>.png`` or listed twice, a
            class folder not in classes.csv, a fold outside 0..4, or a listed image or mask that is
            missing or empty; naming the file and line.
    """
    root = Path(root)
    classes = read_classes(root / CLASSES_FILE)
    lines, files, labels, folds = _read_folds(root / FOLDS_FILE, len(classes))
    index = An8FlowerIndex(
        root, files, torch.tensor(labels, dtype=torch.long), torch.tensor(folds), classes
    )
    for path_of in (index.image_path, index.mask_path):
        listed = ((line, path_of(i)) for i, line in enumerate(lines))
        check_listed_files(listed, root / FOLDS_FILE)
    return index


def read_classes(path: Path) -> list[ClassRow]:
    """``classes.csv``: rows sorted into class order; ids must be exactly 0..C-1."""
    rows: dict[int, tuple[int, ClassRow]] = {}
    for line, row in _rows(path, CLASS_COLUMNS):
        cls = parse_int(path, row["cls"], "class id", line)
        rgb = tuple(parse_int(path, row[c], c, line) for c in "rgb")
        if not all(0 <= v <= 255 for v in rgb):
            raise FormatError(path, f"colour {rgb} has a value outside 0-255", line)
        if not row["part"] or not row["colour"]:
            raise FormatError(path, "empty part or colour name", line)
        if cls in rows:
            raise FormatError(path, f"class {cls} repeats (first at line {rows[cls][0]})", line)
        rows[cls] = (line, ClassRow(cls, row["part"], row["colour"], rgb))
    if not rows:
        raise FormatError(path, "no class rows")
    if sorted(rows) != list(range(len(rows))):
        raise FormatError(path, f"class ids must be 0..{len(rows) - 1}, got {sorted(rows)}")
    return [rows[c][1] for c in range(len(rows))]


def write_classes(path: Path, classes: list[ClassRow]) -> None:
    """Write ``classes.csv`` (the header, then one row per class)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CLASS_COLUMNS)
        writer.writerows((c.cls, c.part, c.colour, *c.rgb) for c in classes)


def write_folds(path: Path, rows: list[tuple[str, int]]) -> None:
    """Write ``folds.csv`` from ``(file, fold)`` rows."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([FOLD_COLUMNS, *rows])


def read_pair(index: An8FlowerIndex, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image ``i`` as uint8 (3, H, W) and its mask as bool (H, W).

    Raises:
        FormatError: The mask's size differs from the image's, or it holds values other than 0
            and 255 (naming the mask file); an undecodable file (naming it).
    """
    image = read_rgb(index.image_path(i))
    mask_path = index.mask_path(i)
    mask = read_rgb(mask_path)[0]
    if mask.shape != image.shape[1:]:
        raise FormatError(
            mask_path,
            f"mask is {tuple(mask.shape)} (H, W) but its image {index.image_path(i)} is "
            f"{tuple(image.shape[1:])}",
        )
    if not bool(((mask == 0) | (mask == 255)).all()):
        raise FormatError(mask_path, "mask holds values other than 0 and 255")
    return image, mask == 255


def _read_folds(path: Path, num_classes: int) -> tuple[list[int], list[str], list[int], list[int]]:
    """Line, file, class and fold of every row of ``folds.csv``."""
    lines, files, labels, folds = [], [], [], []
    seen: dict[str, int] = {}
    for line, row in _rows(path, FOLD_COLUMNS):
        name = row["file"]
        match = _FILE.fullmatch(name)
        if match is None:
            raise FormatError(path, f"file {name!r} is not images/<class>/<name>.png", line)
        if name in seen:
            raise FormatError(path, f"file {name} repeats (first at line {seen[name]})", line)
        seen[name] = line
        cls = int(match.group(1))
        if cls >= num_classes:
            raise FormatError(
                path,
                f"{name} is in class folder {match.group(1)}, which {CLASSES_FILE} does not "
                f"list (classes 0..{num_classes - 1})",
                line,
            )
        fold = parse_int(path, row["fold"], "fold", line)
        if not 0 <= fold < NUM_FOLDS:
            raise FormatError(path, f"fold {fold} is outside 0..{NUM_FOLDS - 1}", line)
        lines.append(line)
        files.append(name)
        labels.append(cls)
        folds.append(fold)
    if not files:
        raise FormatError(path, "no image rows")
    return lines, files, labels, folds


def _rows(path: Path, columns: tuple[str, ...]):
    """``(line, row dict)`` of a CSV file with exactly ``columns`` as its header."""
    if not path.is_file():
        raise FormatError(path, "file does not exist")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != columns:
            raise FormatError(path, f"header must be {','.join(columns)}, got {header}", 1)
        for row in reader:
            line = reader.line_num
            if not row:
                raise FormatError(path, "empty line", line)
            if len(row) != len(columns):
                raise FormatError(
                    path, f"expected {len(columns)} fields, got {len(row)}: {row}", line
                )
            yield line, dict(zip(columns, (v.strip() for v in row), strict=True))
