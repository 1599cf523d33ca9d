"""Readers and writers of CUB-200-2011 and of the wsolevaluation metadata layout, and conversion.

CUB_200_2011 (Wah et al., 2011), one record per line, space separated, 1-based ids:
``images.txt`` ``<id> <path under images/>``; ``image_class_labels.txt`` ``<id> <class 1..200>``;
``train_test_split.txt`` ``<id> <1 train | 0 test>``;
``bounding_boxes.txt`` ``<id> <x> <y> <w> <h>``
(float pixels); ``classes.txt`` ``<class id> <name>``.

wsolevaluation metadata (Choe et al., CVPR 2020), ``metadata/<DATASET>/<split>/``, comma separated:
``image_ids.txt`` ``<path>``; ``class_labels.txt`` ``<path>,<0-based label>``; ``image_sizes.txt``
``<path>,<w>,<h>``; ``localization.txt`` ``<path>,<x0>,<y0>,<x1>,<y1>`` (int, one line per box).
CUB -> metadata: ``x0 = int(x), y0 = int(y), x1 = int(x + w), y1 = int(y + h)``, then x1, y1
clipped to ``W - 1``, ``H - 1``; label = class id - 1. Every malformed or inconsistent line raises
``FormatError`` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from datamodules.formats.errors import FormatError
from datamodules.formats.listed_files import check_listed_files

CUB_FILES = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
)
METADATA_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


@dataclass
class CUBTable:
    """The five CUB tables joined on the 1-based image id (``ids`` ascending)."""

    ids: list[int]
    paths: dict[int, str]
    labels: dict[int, int]  # 1-based class ids
    is_train: dict[int, bool]
    boxes: dict[int, tuple[float, float, float, float]]  # x, y, w, h
    class_names: dict[int, str]


@dataclass
class WSOLSplit:
    """One split of the wsolevaluation metadata, keyed by relative image path (file order kept)."""

    image_ids: list[str]
    labels: dict[str, int] = field(default_factory=dict)  # 0-based
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # (w, h)
    boxes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)


def _records(path: Path, sep: str | None, widths: tuple[int, ...]):
    """Yield (line number, fields) of a table, checking the field count; blank lines are errors."""
    if not path.is_file():
        raise FormatError(path, "file is missing")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]  # final newline is optional
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split(sep) if sep else line.split()
        if len(fields) not in widths:
            raise FormatError(
                path, f"expected {' or '.join(map(str, widths))} fields, got {line!r}", number
            )
        yield number, fields


def _number(path: Path, line: int, text: str, kind=int):
    try:
        return kind(text)
    except ValueError:
        raise FormatError(path, f"not a number: {text!r}", line) from None


def _id_table(path: Path, parse, width: int = 2) -> dict[int, object]:
    """``<id> <values>`` table -> {id: parse(line, fields[1:])}; duplicate ids are errors."""
    table: dict[int, object] = {}
    for line, fields in _records(path, None, (width,)):
        key = _number(path, line, fields[0])
        if key in table:
            raise FormatError(path, f"duplicate id {key}", line)
        table[key] = parse(line, fields[1:])
    return table


def read_cub(root: str | Path) -> CUBTable:
    """Read and cross-check the five CUB tables of ``root`` (the ``CUB_200_2011`` folder)."""
    root = Path(root)
    classes_path = root / "classes.txt"
    names = _id_table(classes_path, lambda line, f: f[0])
    paths = _id_table(root / "images.txt", lambda line, f: f[0])
    label_path = root / "image_class_labels.txt"
    labels = _id_table(label_path, lambda line, f: _number(label_path, line, f[0]))
    split_path = root / "train_test_split.txt"
    split = _id_table(split_path, lambda line, f: _number(split_path, line, f[0]))
    box_path = root / "bounding_boxes.txt"
    boxes = _id_table(
        box_path, lambda line, f: tuple(_number(box_path, line, v, float) for v in f), width=5
    )
    images_path = root / "images.txt"
    for path, table in ((label_path, labels), (split_path, split), (box_path, boxes)):
        _same_ids(path, table, images_path, paths)
    for line, (key, label) in enumerate(labels.items(), start=1):
        if label not in names:
            raise FormatError(label_path, f"image {key}: unknown class id {label}", line)
    for line, (key, value) in enumerate(split.items(), start=1):
        if value not in (0, 1):
            raise FormatError(split_path, f"image {key}: is_training must be 0 or 1", line)
    for line, (key, (x, y, w, h)) in enumerate(boxes.items(), start=1):
        if x < 0 or y < 0 or w <= 0 or h <= 0:
            raise FormatError(box_path, f"image {key}: invalid box {(x, y, w, h)}", line)
    ids = sorted(paths)
    return CUBTable(ids, paths, labels, {k: v == 1 for k, v in split.items()}, boxes, names)


def _same_ids(path: Path, table: dict, images_path: Path, images: dict) -> None:
    """Every id of ``images.txt`` has exactly one row in ``path``; errors name the line at fault."""
    if table.keys() == images.keys():
        return
    extra = next((key for key in table if key not in images), None)
    if extra is not None:
        line = list(table).index(extra) + 1
        raise FormatError(path, f"image id {extra} is not listed in {images_path.name}", line)
    listed = list(images)
    missing = next(i for i, key in enumerate(listed) if key not in table)
    rows = f"{len(table)} rows for the {len(images)} images of {images_path.name}"
    hint = ": truncated file?" if all(key not in table for key in listed[missing:]) else ""
    message = f"no row for image {listed[missing]} (line {missing + 1} of {images_path.name}"
    raise FormatError(path, f"{message}; {rows}){hint}", missing + 1)


def check_cub_images(root: str | Path, table: CUBTable) -> dict[int, tuple[int, int]]:
    """Check every listed image file (present, not empty, a readable header); return {id: (w, h)}.

    Also checks that each box of ``bounding_boxes.txt`` lies inside its image.
    """
    root = Path(root)
    listing = root / "images.txt"
    files = [(line, root / "images" / table.paths[key]) for line, key in enumerate(table.ids, 1)]
    check_listed_files(files, listing)
    sizes = {}
    for (line, image_path), key in zip(files, table.ids, strict=True):
        try:
            with Image.open(image_path) as image:
                sizes[key] = image.size
        except OSError as err:  # PIL's UnidentifiedImageError is an OSError
            message = f"lists {image_path}: not a readable image ({err})"
            raise FormatError(listing, message, line) from None
        x, y, w, h = table.boxes[key]
        width, height = sizes[key]
        if x + w > width + 1 or y + h > height + 1:
            raise FormatError(
                root / "bounding_boxes.txt", f"image {key}: box outside {width}x{height}", line
            )
    return sizes


def write_cub(root: str | Path, table: CUBTable) -> None:
    """Write the five CUB tables of ``table`` into ``root`` (images are not touched)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = table.ids
    _write(root / "classes.txt", [f"{k} {v}" for k, v in sorted(table.class_names.items())])
    _write(root / "images.txt", [f"{i} {table.paths[i]}" for i in ids])
    _write(root / "image_class_labels.txt", [f"{i} {table.labels[i]}" for i in ids])
    _write(root / "train_test_split.txt", [f"{i} {int(table.is_train[i])}" for i in ids])
    _write(
        root / "bounding_boxes.txt",
        [f"{i} " + " ".join(f"{v:.1f}" for v in table.boxes[i]) for i in ids],
    )


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_wsol_metadata(folder: str | Path) -> WSOLSplit:
    """Read one metadata split folder (``image_ids.txt`` ... ``localization.txt``), checked.

    Every image of ``image_ids.txt`` (each listed once) needs one row in ``class_labels.txt`` and
    ``image_sizes.txt`` and, when ``localization.txt`` exists, at least one box inside its image.
    """
    folder = Path(folder)
    ids_path = folder / "image_ids.txt"
    image_ids, first_line = [], {}
    for line, fields in _records(ids_path, ",", (1,)):
        if not fields[0]:
            raise FormatError(ids_path, "empty line", line)
        if fields[0] in first_line:
            message = f"image {fields[0]!r} repeats (first at line {first_line[fields[0]]})"
            raise FormatError(ids_path, message, line)
        first_line[fields[0]] = line
        image_ids.append(fields[0])
    split = WSOLSplit(image_ids)
    for name, target, width in (
        ("class_labels.txt", split.labels, 2),
        ("image_sizes.txt", split.sizes, 3),
    ):
        path = folder / name
        for line, fields in _records(path, ",", (width,)):
            if fields[0] not in first_line:
                raise FormatError(path, f"unknown image {fields[0]!r}", line)
            if fields[0] in target:
                raise FormatError(path, f"image {fields[0]!r} repeats", line)
            values = [_number(path, line, v) for v in fields[1:]]
            target[fields[0]] = values[0] if width == 2 else tuple(values)
        _no_missing_rows(path, target, image_ids)
    path = folder / "localization.txt"
    if path.is_file():
        for line, fields in _records(path, ",", (5,)):
            if fields[0] not in first_line:
                raise FormatError(path, f"unknown image {fields[0]!r}", line)
            x0, y0, x1, y1 = (_number(path, line, v) for v in fields[1:])
            width, height = split.sizes[fields[0]]
            if not (0 <= x0 <= x1 <= width - 1 and 0 <= y0 <= y1 <= height - 1):
                raise FormatError(
                    path, f"box {(x0, y0, x1, y1)} outside the {width}x{height} image", line
                )
            split.boxes.setdefault(fields[0], []).append((x0, y0, x1, y1))
        _no_missing_rows(path, split.boxes, image_ids)
    return split


def _no_missing_rows(path: Path, rows: dict, image_ids: list[str]) -> None:
    """Raise naming the first image of ``image_ids.txt`` without a row in ``path``.

    The line named is the one after the last row read (where a truncated file stops).
    """
    missing = next((i for i, image in enumerate(image_ids) if image not in rows), None)
    if missing is None:
        return
    lines = sum(len(v) if isinstance(v, list) else 1 for v in rows.values())
    cut = all(image not in rows for image in image_ids[missing:])
    message = f"no row for {image_ids[missing]} (line {missing + 1} of image_ids.txt)"
    hint = ": truncated file?" if cut else ""
    raise FormatError(
        path, f"{message}; rows for {len(rows)} of {len(image_ids)} images{hint}", lines + 1
    )


def write_wsol_metadata(folder: str | Path, split: WSOLSplit) -> None:
    """Write one metadata split folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = split.image_ids
    _write(folder / "image_ids.txt", ids)
    _write(folder / "class_labels.txt", [f"{i},{split.labels[i]}" for i in ids])
    _write(
        folder / "image_sizes.txt", [f"{i},{split.sizes[i][0]},{split.sizes[i][1]}" for i in ids]
    )
    if split.boxes:
        lines = [
            f"{i},{x0},{y0},{x1},{y1}" for i in ids for x0, y0, x1, y1 in split.boxes.get(i, [])
        ]
        _write(folder / "localization.txt", lines)


def cub_box_to_wsol(
    box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[int, ...]:
    """CUB (x, y, w, h) -> [WSOL] (x0, y0, x1, y1): truncate, x1 = x + w, clip to W - 1, H - 1."""
    x, y, w, h = box
    width, height = size
    return int(x), int(y), min(int(x + w), width - 1), min(int(y + h), height - 1)


def wsol_splits(table: CUBTable, sizes: dict[int, tuple[int, int]]) -> dict[str, WSOLSplit]:
    """The ``train`` and ``test`` metadata splits that the CUB tables and image sizes imply."""
    splits = {}
    for name, train in (("train", True), ("test", False)):
        ids = [i for i in table.ids if table.is_train[i] == train]
        paths = [table.paths[i] for i in ids]
        split = WSOLSplit(paths)
        for i, path in zip(ids, paths, strict=True):
            split.labels[path] = table.labels[i] - 1
            split.sizes[path] = sizes[i]
            split.boxes[path] = [cub_box_to_wsol(table.boxes[i], sizes[i])]
        splits[name] = split
    return splits


def cub_to_wsol_metadata(root: str | Path, out: str | Path) -> dict[str, WSOLSplit]:
    """Convert ``root`` (CUB_200_2011) into ``out/train`` and ``out/test`` metadata folders."""
    table = read_cub(root)
    splits = wsol_splits(table, check_cub_images(root, table))
    for name, split in splits.items():
        write_wsol_metadata(Path(out) / name, split)
    return splits


def check_metadata_agrees(folder: str | Path, split: WSOLSplit, expected: WSOLSplit) -> None:
    """Check a metadata split against the one the CUB tables imply: images, labels and sizes.

    Boxes are not compared (wsolevaluation's release may round them otherwise); each is already
    checked against its image size by ``read_wsol_metadata``.

    Raises:
        FormatError: An image missing from either side, or a label or size that differs, naming
            the metadata file and line.
    """
    folder = Path(folder)
    ids_path = folder / "image_ids.txt"
    absent = [path for path in split.image_ids if path not in expected.labels]
    if absent:
        where = "not in this split of the CUB tables (images.txt, train_test_split.txt)"
        raise FormatError(ids_path, f"{absent[0]}: {where}", _line_of(ids_path, absent[0]))
    listed = set(split.image_ids)
    missing = [path for path in expected.image_ids if path not in listed]
    if missing:
        message = f"{len(missing)} images of this split in the CUB tables are not listed"
        line = len(split.image_ids) + 1  # where a truncated file stops
        raise FormatError(ids_path, f"{message}, first {missing[0]}", line)
    for name, ours, theirs, what in (
        ("class_labels.txt", split.labels, expected.labels, "label (image_class_labels.txt - 1)"),
        ("image_sizes.txt", split.sizes, expected.sizes, "size (the image file's)"),
    ):
        for path in split.image_ids:
            if ours[path] != theirs[path]:
                message = f"{path}: {ours[path]}, but its {what} is {theirs[path]}"
                raise FormatError(folder / name, message, _line_of(folder / name, path))


def _line_of(path: Path, image: str) -> int | None:
    """1-based line of ``path`` whose first comma-separated field is ``image``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.split(",")[0].strip() == image:
            return number
    return None


def wsol_to_cub(
    metadata: str | Path, out: str | Path, class_names: dict[int, str] | None = None
) -> CUBTable:
    """Inverse of ``cub_to_wsol_metadata``: ``metadata/{train,test}`` -> CUB tables in ``out``.

    Ids follow the order train then test; boxes become (x0, y0, x1 - x0, y1 - y0), the first box
    of each image (CUB has one per image).
    """
    ids, paths, labels, is_train, boxes = [], {}, {}, {}, {}
    for name in ("train", "test"):
        split = read_wsol_metadata(Path(metadata) / name)
        for path in split.image_ids:
            key = len(ids) + 1
            ids.append(key)
            paths[key], labels[key], is_train[key] = path, split.labels[path] + 1, name == "train"
            x0, y0, x1, y1 = split.boxes[path][0]
            boxes[key] = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
    if class_names is None:
        class_names = {}
        for key in ids:
            class_names.setdefault(labels[key], paths[key].split("/")[0])
    table = CUBTable(ids, paths, labels, is_train, boxes, class_names)
    write_cub(out, table)
    return table


def resize_box(box, image_size: tuple[int, int], resize_size: tuple[int, int]) -> tuple[int, ...]:
    """Scale an (x0, y0, x1, y1) box from ``image_size`` (w, h) to ``resize_size``, truncating.

    As [WSOL] ``resize_bbox``: ``int(x * new_w / w)``, multiplying first; ``x * (new_w / w)``
    rounds the ratio first and comes out 1 px smaller on some boxes (e.g. x = 55 of 110 px).
    """
    (width, height), (new_width, new_height) = image_size, resize_size
    x0, y0, x1, y1 = box
    return (
        int(x0 * new_width / width),
        int(y0 * new_height / height),
        int(x1 * new_width / width),
        int(y1 * new_height / height),
    )
