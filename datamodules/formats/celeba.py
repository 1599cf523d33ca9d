"""CelebA's official on-disk format (aligned-and-cropped release), read and written.

Layout under a root folder::

    img_align_celeba/000001.jpg ...          178 x 218 RGB JPEGs
    list_attr_celeba.txt                      count line, 40 names, rows "name v1 ... v40" with v in {1, -1}
    list_eval_partition.txt                   rows "name split" with split 0 train, 1 val, 2 test
    identity_CelebA.txt                       rows "name identity"
    list_bbox_celeba.txt                      count line, header, rows "name x_1 y_1 width height"
    list_landmarks_align_celeba.txt           count line, header, rows "name lefteye_x ... rightmouth_y"

Writers produce exactly the official files, so a synthetic twin is read by the same readers as the
real dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

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
        raise ValueError(f"attributes {tuple(attributes.shape)} != ({len(image_names)}, {len(names)})")
    lines = [str(len(image_names)), " ".join(names)]
    signs = torch.where(attributes.bool(), 1, -1).tolist()
    lines += [f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(image_names, signs)]
    Path(path).write_text("\n".join(lines) + "\n")


def write_partition(path: str | Path, image_names: Sequence[str], splits: Sequence[int]) -> None:
    """Write ``list_eval_partition.txt`` (0 train, 1 val, 2 test)."""
    _write_pairs(path, image_names, splits)


def write_identities(path: str | Path, image_names: Sequence[str], identities: Sequence[int]) -> None:
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
    Path(path).write_text("".join(f"{n} {int(v)}\n" for n, v in zip(image_names, values)))


def _write_table(path, header, image_names, values: torch.Tensor) -> None:
    rows = values.round().long().tolist()
    if len(rows) != len(image_names):
        raise ValueError(f"{len(rows)} rows for {len(image_names)} images")
    lines = [str(len(image_names)), " ".join(header)]
    lines += [f"{n} " + " ".join(str(v) for v in row) for n, row in zip(image_names, rows)]
    Path(path).write_text("\n".join(lines) + "\n")
