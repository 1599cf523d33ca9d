"""CelebA's official on-disk format (aligned-and-cropped release), read and written.

Layout under a root folder::

    img_align_celeba/000001.jpg ...    178 x 218 RGB JPEGs
    list_attr_celeba.txt                count line, 40 names, rows "name v1 ... v40", v in {1, -1}
    list_eval_partition.txt             rows "name split" with split 0 train, 1 val, 2 test
    identity_CelebA.txt                 rows "name identity"
    list_bbox_celeba.txt                count line, header, rows "name x_1 y_1 width height"
    list_landmarks_align_celeba.txt     count line, header, rows "name lefteye_x ... rightmouth_y"

Writers produce exactly the official files, so a synthetic twin is read by the same readers as the
real dataset. Readers are strict: any malformed, truncated or inconsistent table raises a
``FormatError`` naming the file and line, and a missing root or file a ``DatasetNotFoundError``
saying where to get it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.formats.text_tables import int_columns, read_text_table
from datamodules.paths import make_data_command

# fmt: off
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)
BBOX_HEADER = ("image_id", "x_1", "y_1", "width", "height")
LANDMARK_HEADER = (
    "lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y",
)
# fmt: on
IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
BBOX_FILE = "list_bbox_celeba.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"


def image_name(index: int) -> str:
    """CelebA's file name of the ``index``-th image, 1-based: ``image_name(1) == '000001.jpg'``."""
    return f"{index:06d}.jpg"


def write_attribute_table(
    path: str | Path,
    image_names: Sequence[str],
    attributes: torch.Tensor,
    names: Sequence[str] = ATTRIBUTE_NAMES,
) -> None:
    """Write ``list_attr_celeba.txt``; ``attributes`` is (N, len(names)) in {0, 1}."""
    if attributes.shape != (len(image_names), len(names)):
        shape = (len(image_names), len(names))
        raise ValueError(f"attributes {tuple(attributes.shape)} != {shape}")
    lines = [str(len(image_names)), " ".join(names)]
    signs = torch.where(attributes.bool(), 1, -1).tolist()
    lines += [
        f"{n} " + " ".join(f"{v:2d}" for v in row)
        for n, row in zip(image_names, signs, strict=True)
    ]
    Path(path).write_text("\n".join(lines) + "\n")


def write_partition(path: str | Path, image_names: Sequence[str], splits: Sequence[int]) -> None:
    """Write ``list_eval_partition.txt`` (0 train, 1 val, 2 test)."""
    _write_pairs(path, image_names, splits)


def write_identities(
    path: str | Path, image_names: Sequence[str], identities: Sequence[int]
) -> None:
    """Write ``identity_CelebA.txt`` (identities are positive integers, as in the release)."""
    _write_pairs(path, image_names, identities)


def write_bboxes(path: str | Path, image_names: Sequence[str], boxes: torch.Tensor) -> None:
    """Write ``list_bbox_celeba.txt``; ``boxes`` is (N, 4) integer x_1, y_1, width, height."""
    _write_table(path, BBOX_HEADER, image_names, boxes)


def write_landmarks(path: str | Path, image_names: Sequence[str], landmarks: torch.Tensor) -> None:
    """Write ``list_landmarks_align_celeba.txt``; ``landmarks`` is (N, 10) integer pixel coords."""
    _write_table(path, LANDMARK_HEADER, image_names, landmarks)


def _write_pairs(path: str | Path, image_names: Sequence[str], values: Sequence[int]) -> None:
    if len(values) != len(image_names):
        raise ValueError(f"{len(values)} values for {len(image_names)} images")
    Path(path).write_text(
        "".join(f"{n} {int(v)}\n" for n, v in zip(image_names, values, strict=True))
    )


def _write_table(path, header, image_names, values: torch.Tensor) -> None:
    rows = values.round().long().tolist()
    if len(rows) != len(image_names):
        raise ValueError(f"{len(rows)} rows for {len(image_names)} images")
    lines = [str(len(image_names)), " ".join(header)]
    lines += [
        f"{n} " + " ".join(str(v) for v in row) for n, row in zip(image_names, rows, strict=True)
    ]
    Path(path).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------
# Readers: strict, every problem is a FormatError naming the file and line.
# --------------------------------------------------------------------------------------------------


def how_to_get(root: Path) -> str:
    """Where to get CelebA and how to place it under ``root``; the commands work as written."""
    return (
        "CelebA cannot be downloaded by code. Get it from the project page "
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive or Baidu Drive links):\n"
        "  'Align&Cropped Images' -> Img/img_align_celeba.zip, and the Anno/ and Eval/ folders.\n"
        f"Unzip and place under {root}:\n"
        "  img_align_celeba/000001.jpg ... 202599.jpg  (img_align_celeba.zip)\n"
        "  list_attr_celeba.txt                (Anno/)\n"
        "  identity_CelebA.txt                 (Anno/)\n"
        "  list_bbox_celeba.txt                (Anno/, read only when boxes are asked for)\n"
        "  list_landmarks_align_celeba.txt     (Anno/, read only when landmarks are asked for)\n"
        "  list_landmarks_celeba.txt           (Anno/, in-the-wild landmarks, not read)\n"
        "  list_eval_partition.txt             (Eval/)\n"
        f"and check it with `{make_data_command('celeba', root)}`; a copy elsewhere: run with "
        "`--data.init_args.root=DIR` (or LATENTLAB_DATA=DIR holding celeba/).\n"
        "Without the real data, `make data DATASET=synthetic-faces OUT=DIR` writes a synthetic "
        "twin in this layout under DIR/celeba (or run with `--data.init_args.synthetic=small`)."
    )


SPLIT_CODES = {0: "train", 1: "val", 2: "test"}


@dataclass
class CelebAIndex:
    """Every table of a CelebA root, cross-checked and aligned to the attribute table's row order.

    Attributes:
        root: The data root.
        names: Image file names (``000001.jpg`` ...), in ``list_attr_celeba.txt`` order.
        attribute_names: The 40 official attribute names, official order.
        attributes: uint8 (N, 40) in {0, 1}.
        partition: long (N,) official split code, 0 train, 1 val, 2 test.
        identity: long (N,) identity label.
        bboxes: long (N, 4) ``x_1, y_1, width, height`` when read, else None.
        landmarks: long (N, 10) aligned-image landmarks when read, else None.
    """

    root: Path
    names: list[str]
    attribute_names: list[str]
    attributes: torch.Tensor
    partition: torch.Tensor
    identity: torch.Tensor
    bboxes: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None

    @property
    def image_dir(self) -> Path:
        """The folder of aligned JPEGs."""
        return self.root / IMAGE_DIR

    @property
    def attribute_file(self) -> Path:
        """The attribute table, which fixes the row order."""
        return self.root / ATTR_FILE

    def table_line(self, i: int) -> int:
        """Line of ``list_attr_celeba.txt`` that lists image ``i`` (after the count and names)."""
        return i + 3


def read_attribute_table(path: str | Path) -> tuple[list[str], list[str], torch.Tensor]:
    """Read ``list_attr_celeba.txt``.

    Returns:
        ``(image_names, attribute_names, attributes)``; attributes uint8 (N, L), +1 -> 1, -1 -> 0.

    Raises:
        FormatError: A count line that is not an integer or disagrees with the rows, a repeated
            name, a row with the wrong number of values, or a value other than 1 / -1.
    """
    table = read_text_table(path, width=None, counted=True)
    names = table.header
    if not names:
        raise FormatError(table.path, "the attribute-name line is empty", 2)
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise FormatError(table.path, f"attribute names repeat: {repeated}", 2)
    values = table.grid[:, 1:]
    positive = values == "1"
    if not (positive | (values == "-1")).all():
        for line, fields in table.strict_rows():
            bad = [j for j, v in enumerate(fields[1:]) if v not in ("1", "-1")]
            if bad:
                msg = f"value {fields[bad[0] + 1]!r} for {names[bad[0]]} is not 1 or -1"
                raise FormatError(table.path, msg, line)
    attributes = torch.from_numpy(positive.astype(np.uint8)).reshape(len(values), len(names))
    return table.names, list(names), attributes


def read_partition(path: str | Path) -> dict[str, int]:
    """Read ``list_eval_partition.txt``: image name -> split code (0 train, 1 val, 2 test).

    Raises:
        FormatError: A malformed row, a non-integer or unknown split code, or a repeated name.
    """
    path = Path(path)
    pairs = _read_pairs(path, "split code")
    if not set(pairs.values()) <= SPLIT_CODES.keys():
        for line, (name, code) in enumerate(pairs.items(), start=1):
            if code not in SPLIT_CODES:
                msg = f"unknown split code {code} for {name} (expected 0 train, 1 val or 2 test)"
                raise FormatError(path, msg, line)
    return pairs


def read_identities(path: str | Path) -> dict[str, int]:
    """Read ``identity_CelebA.txt``: image name -> identity (an integer).

    Raises:
        FormatError: A malformed row, a non-integer identity, or a repeated name.
    """
    return _read_pairs(Path(path), "identity")


def read_bboxes(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """Read ``list_bbox_celeba.txt``: names and long (N, 4) ``x_1, y_1, width, height``."""
    return _read_table(Path(path), BBOX_HEADER)


def read_landmarks(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """Read ``list_landmarks_align_celeba.txt``: names and long (N, 10) ``lefteye_x ...``."""
    return _read_table(Path(path), LANDMARK_HEADER)


def read_celeba(root: str | Path, bboxes: bool = False, landmarks: bool = False) -> CelebAIndex:
    """Read and cross-check every table of a CelebA root (see the module docstring for the layout).

    Args:
        root: The data root.
        bboxes: Also read ``list_bbox_celeba.txt`` (then it must exist).
        landmarks: Also read ``list_landmarks_align_celeba.txt`` (then it must exist).

    Raises:
        DatasetNotFoundError: The root, the image folder or a needed table is missing.
        FormatError: A malformed table, attribute names other than the official 40, or tables whose
            counts or image names disagree with ``list_attr_celeba.txt``.
    """
    root = Path(root)
    needed = [IMAGE_DIR, ATTR_FILE, PARTITION_FILE, IDENTITY_FILE]
    needed += [BBOX_FILE] * bboxes + [LANDMARK_FILE] * landmarks
    if not root.is_dir():
        raise DatasetNotFoundError("CelebA", root, root, how_to_get(root))
    for name in needed:
        if not (root / name).exists():
            raise DatasetNotFoundError("CelebA", root, root / name, how_to_get(root))
    attr_path = root / ATTR_FILE
    names, attribute_names, attributes = read_attribute_table(attr_path)
    if tuple(attribute_names) != ATTRIBUTE_NAMES:
        wrong = [n for n in attribute_names if n not in ATTRIBUTE_NAMES]
        msg = f"attribute names differ from the official 40 in official order (unknown: {wrong})"
        raise FormatError(attr_path, msg, 2)
    ref = _Reference(attr_path, names, first_line=3)
    partition = read_partition(root / PARTITION_FILE)
    identity = read_identities(root / IDENTITY_FILE)
    index = CelebAIndex(
        root=root,
        names=names,
        attribute_names=attribute_names,
        attributes=attributes,
        partition=ref.align(root / PARTITION_FILE, list(partition), list(partition.values()), 1),
        identity=ref.align(root / IDENTITY_FILE, list(identity), list(identity.values()), 1),
    )
    if bboxes:
        box_names, boxes = read_bboxes(root / BBOX_FILE)
        index.bboxes = ref.align(root / BBOX_FILE, box_names, boxes, 3)
    if landmarks:
        mark_names, marks = read_landmarks(root / LANDMARK_FILE)
        index.landmarks = ref.align(root / LANDMARK_FILE, mark_names, marks, 3)
    return index


@dataclass
class _Reference:
    """The attribute table's names, against which every other table is aligned."""

    path: Path
    names: list[str]
    first_line: int

    def align(self, path: Path, names: list[str], values, first_line: int) -> torch.Tensor:
        """Reorder ``values`` (listed for ``names`` in file ``path``) into the reference order."""
        if names == self.names:  # the release lists every table in the same order
            return torch.as_tensor(values, dtype=torch.long)
        position = {n: i for i, n in enumerate(self.names)}
        counts = ""
        if len(names) != len(self.names):
            counts = f" (counts disagree: {len(names)} in {path.name}, {len(self.names)} in "
            counts += f"{self.path.name})"
        for j, name in enumerate(names):
            if name not in position:
                msg = f"{name} is not listed in {self.path.name}{counts}"
                raise FormatError(path, msg, j + first_line)
        if counts:
            present = set(names)
            i = next(i for i, n in enumerate(self.names) if n not in present)
            msg = f"{self.names[i]} has no row in {path.name}{counts}"
            raise FormatError(self.path, msg, i + self.first_line)
        values = torch.as_tensor(values, dtype=torch.long)
        aligned = torch.empty_like(values)
        aligned[torch.tensor([position[n] for n in names])] = values
        return aligned


def _read_pairs(path: Path, what: str) -> dict[str, int]:
    """Rows ``name value`` without count or header (partition and identity files)."""
    table = read_text_table(path, width=1, counted=False)
    values = int_columns(table, [what])[:, 0].tolist()
    return dict(zip(table.names, values, strict=True))


def _read_table(path: Path, header: tuple[str, ...]) -> tuple[list[str], torch.Tensor]:
    """Count line, header line, rows ``name v1 ... vk`` of integers (bbox and landmark files)."""
    columns = list(header[1:] if header[0] == "image_id" else header)
    table = read_text_table(path, width=len(columns), counted=True)
    if tuple(table.header) != header:
        got = " ".join(table.header)
        raise FormatError(path, f"expected the header {' '.join(header)!r}, got {got!r}", 2)
    return table.names, torch.from_numpy(int_columns(table, columns))
