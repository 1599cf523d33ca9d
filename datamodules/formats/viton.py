"""VITON's on-disk formats (the CP-VTON layout and VITON-HD's), read and written.

CP-VTON layout (``viton``; 256 x 192 images, H x W)::

    train/image/000003_0.jpg         person (domain A), RGB JPEG
    train/cloth/000003_1.jpg         catalog item (domain B) on white, RGB JPEG
    train/cloth-mask/000003_1.jpg    the item's mask, a grayscale JPEG (foreground > 127)
    train/image-parse/000003_0.png   LIP labels of the person, one index per pixel (palette PNG)
    train/pose/000003_0_keypoints.json   OpenPose (``people[0].pose_keypoints``), optional
    test/...                         the same folders
    train_pairs.txt  test_pairs.txt  lines ``000003_0.jpg 000003_1.jpg`` (person, item)

VITON-HD (``viton_hd``; 1024 x 768) differs in three names: the parse folder is
``image-parse-v3/``, the poses are ``openpose_json/<name>_keypoints.json`` with
``pose_keypoints_2d`` (BODY_25), and a person and its item share one file name
(``00000_00.jpg 00000_00.jpg``). Its other folders (``agnostic-v3.2``, ``image-densepose``,
``openpose_img``, ...) are not read.

Cleaned pair lists (``clean_train_pairs.txt``, ``clean_test_pairs.txt``, same line format) are
written beside the originals by ``datamodules.viton_cleaning``. The synthetic twin
(``datamodules.synthetic.viton``) adds ``test_cross_pairs.txt`` (person i, item j != i) with the
true try-on images under ``test/cross/`` and their parses under ``test/cross-parse/``.

Readers are strict: a malformed pairs line, a pair naming a missing file, a parse with labels
outside LIP's 20, an empty clothing mask or an image of the wrong size raise a ``FormatError``
naming the file and the pairs line; a missing root or pairs file a ``DatasetNotFoundError``
saying where VITON can (and cannot) be had.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.formats.listed_files import check_listed_files
from datamodules.formats.text_tables import read_lines
from datamodules.paths import make_data_command

# fmt: off
LIP_LABELS: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat",
    "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
    "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)
#: LIP's visualisation palette (RGB per label), written into the parse PNGs as VITON's are.
LIP_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 0, 0), (254, 0, 0), (0, 85, 0), (169, 0, 51), (254, 85, 0), (0, 0, 85),
    (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0),
    (0, 0, 254), (51, 169, 220), (0, 254, 254), (85, 254, 169), (169, 254, 85), (254, 254, 0),
    (254, 169, 0),
)
# fmt: on
#: The person's clothing mask m_A: upper-clothes, dress, coat.
CLOTHING_LABELS = (5, 6, 7)
MASK_THRESHOLD = 127  # cloth-mask JPEG: foreground where the value is > 127
SPLITS = ("train", "test")
CROSS_PAIRS = "test_cross_pairs.txt"
CROSS_DIR, CROSS_PARSE_DIR = "cross", "cross-parse"
TWIN_SIDECAR = "viton_synth.json"  # written by the twin beside its pair lists


@dataclass(frozen=True)
class Layout:
    """Folder names and native size of one release."""

    name: str
    parse_dir: str
    pose_dir: str
    pose_key: str
    size: tuple[int, int]  # (H, W)


LAYOUTS: dict[str, Layout] = {
    "viton": Layout("viton", "image-parse", "pose", "pose_keypoints", (256, 192)),
    "viton_hd": Layout(
        "viton_hd", "image-parse-v3", "openpose_json", "pose_keypoints_2d", (1024, 768)
    ),
}


@dataclass(frozen=True)
class Pair:
    """One line of a pairs file: a person and the item it wears (or, cross, another item)."""

    person: str
    cloth: str
    line: int
    source: Path  # the pairs file

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def how_to_get(root: Path) -> str:
    """Where VITON can be had (its authors no longer distribute it) and how to lay it out."""
    return (
        "VITON (Han et al., CVPR 2018) is no longer distributed by its authors: the dataset "
        "section of https://github.com/xthan/VITON says it is not publicly available any more "
        "(copyright). This suite cannot download it. If you hold a copy of the CP-VTON "
        "preprocessed release ('viton_resize', see the data notes of "
        "https://github.com/sergeywong/cp-vton), place it under the root as\n"
        f"  {root}/train/{{image,cloth,cloth-mask,image-parse,pose}}/  {root}/train_pairs.txt\n"
        f"  {root}/test/{{image,cloth,cloth-mask,image-parse,pose}}/   {root}/test_pairs.txt\n"
        "VITON-HD (research use, https://github.com/shadow2496/VITON-HD) is read too: its "
        "train/, test/, train_pairs.txt and test_pairs.txt as released.\n"
        f"Then clean it once with `{make_data_command('viton', root)}` (writes "
        "clean_train_pairs.txt, clean_test_pairs.txt); a copy elsewhere: run with "
        "`--data.init_args.root=DIR` (or LATENTLAB_DATA=DIR holding viton/).\n"
        "Without it, `make data DATASET=synthetic-viton OUT=DIR` writes the synthetic twin in "
        "this layout (or run with `--data.init_args.synthetic=tiny`)."
    )


def detect_layout(root: str | Path) -> Layout:
    """VITON-HD when ``root/train`` (or ``root/test``) has ``image-parse-v3/``, else CP-VTON's."""
    root = Path(root)
    hd = any((root / split / LAYOUTS["viton_hd"].parse_dir).is_dir() for split in SPLITS)
    return LAYOUTS["viton_hd" if hd else "viton"]


def native_size(root: str | Path, layout: Layout) -> tuple[int, int]:
    """(H, W) the files of ``root`` should have: the twin's (its sidecar ``viton_synth.json``
    says), else the layout's."""
    sidecar = Path(root) / TWIN_SIDECAR
    if sidecar.is_file():
        written = json.loads(sidecar.read_text())["fingerprint"]
        return written["height"], written["width"]
    return layout.size


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a pairs file: one ``person item`` line per pair.

    Raises:
        FormatError: An empty line inside the file, a line without exactly two names, or a person
            listed twice (naming both lines).
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "pairs file is missing")
    pairs, seen = [], {}
    for line, text in enumerate(read_lines(path), start=1):
        fields = text.split()
        if len(fields) != 2:
            got = f"{len(fields)} fields" if fields else "an empty line"
            raise FormatError(path, f"expected 'person.jpg item.jpg', got {got}", line)
        if fields[0] in seen:
            message = f"person {fields[0]} is listed twice (first at line {seen[fields[0]]})"
            raise FormatError(path, message, line)
        seen[fields[0]] = line
        pairs.append(Pair(fields[0], fields[1], line, path))
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[tuple[str, str]]) -> None:
    """Write a pairs file from ``(person, item)`` names."""
    Path(path).write_text("".join(f"{a} {b}\n" for a, b in pairs))


def pairs_file(root: Path, split: str, clean: bool) -> Path:
    """``<root>/<split>_pairs.txt`` or its cleaned version ``clean_<split>_pairs.txt``."""
    return root / (f"clean_{split}_pairs.txt" if clean else f"{split}_pairs.txt")


def person_files(root: Path, split: str, layout: Layout, person: str) -> dict[str, Path]:
    """The files of one person: ``image``, ``parse`` and (possibly absent) ``pose``."""
    folder, stem = root / split, Path(person).stem
    return {
        "image": folder / "image" / person,
        "parse": folder / layout.parse_dir / f"{stem}.png",
        "pose": folder / layout.pose_dir / f"{stem}_keypoints.json",
    }


def cloth_files(root: Path, split: str, cloth: str) -> dict[str, Path]:
    """The files of one item: ``cloth`` and ``mask`` (``cloth-mask/<name>``, else its ``.png``)."""
    folder = root / split
    mask = folder / "cloth-mask" / cloth
    if not mask.exists() and (png := mask.with_suffix(".png")).exists():
        mask = png
    return {"cloth": folder / "cloth" / cloth, "mask": mask}


def cross_files(root: Path, pair: Pair) -> dict[str, Path]:
    """The twin's true try-on of ``pair`` (person i wearing item j): image and parse."""
    name = f"{Path(pair.person).stem}__{Path(pair.cloth).stem}"
    return {
        "image": root / "test" / CROSS_DIR / f"{name}.jpg",
        "parse": root / "test" / CROSS_PARSE_DIR / f"{name}.png",
    }


def check_pair_files(root: Path, split: str, layout: Layout, pairs: Sequence[Pair]) -> None:
    """Every file a pair needs exists and is not empty (one stat each, no decode).

    Raises:
        FormatError: ``<pairs file>:<line>: lists <file> but it does not exist`` (or is empty).
    """
    if not pairs:
        return
    files = []
    for pair in pairs:
        person = person_files(root, split, layout, pair.person)
        cloth = cloth_files(root, split, pair.cloth)
        files += [(pair.line, person["image"]), (pair.line, person["parse"])]
        files += [(pair.line, cloth["cloth"]), (pair.line, cloth["mask"])]
    check_listed_files(files, pairs[0].source)


def read_parse(path: str | Path) -> np.ndarray:
    """A parse PNG as uint8 (H, W) LIP labels (palette or grayscale PNG; RGB is refused).

    Raises:
        FormatError: Not a readable PNG, a colour-coded (RGB) parse, or labels above 19.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise FormatError(
                    path,
                    f"parse must hold one LIP label per pixel (mode P or L), got mode {image.mode}",
                )
            labels = np.asarray(image)
    except OSError as err:
        raise FormatError(path, f"cannot read parse: {err}") from None
    top = int(labels.max()) if labels.size else 0
    if top >= len(LIP_LABELS):
        unknown = sorted(int(v) for v in np.unique(labels) if v >= len(LIP_LABELS))
        raise FormatError(path, f"unknown LIP labels {unknown} (LIP has 0-19)")
    return labels


def clothing_mask(labels: np.ndarray) -> np.ndarray:
    """m_A: bool (H, W), the parse's upper-clothes, dress and coat pixels."""
    return np.isin(labels, CLOTHING_LABELS)


def read_gray(path: str | Path) -> np.ndarray:
    """A (mask) image as uint8 (H, W); an RGB file is converted to luma."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except OSError as err:
        raise FormatError(path, f"cannot read image: {err}") from None


def read_cloth_mask(path: str | Path) -> np.ndarray:
    """The item's mask m_B: bool (H, W), value > 127 (JPEG-safe threshold)."""
    return read_gray(path) > MASK_THRESHOLD


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as err:
        raise FormatError(path, f"cannot read image: {err}") from None
    return height, width


def check_pair_content(
    root: Path, split: str, layout: Layout, pair: Pair, size: tuple[int, int]
) -> None:
    """Decode what setup must check of one pair: sizes, parse labels, both clothing masks.

    Raises:
        FormatError: At ``pair``'s pairs-file line, naming the file: an image, item, mask or
            parse whose size is not ``size`` (H, W), a parse with unknown labels, a person whose
            parse has no clothing pixel (labels 5, 6, 7), or an empty cloth mask.
    """
    person = person_files(root, split, layout, pair.person)
    cloth = cloth_files(root, split, pair.cloth)
    for path in (person["image"], cloth["cloth"]):
        _check_size(pair, path, image_size(path), size)
    mask = _at(pair, read_cloth_mask, cloth["mask"])
    _check_size(pair, cloth["mask"], mask.shape, size)
    if not mask.any():
        _fail(pair, f"{cloth['mask']}: the item's mask is empty (no value > {MASK_THRESHOLD})")
    labels = _at(pair, read_parse, person["parse"])
    _check_size(pair, person["parse"], labels.shape, size)
    if not clothing_mask(labels).any():
        _fail(
            pair,
            f"{person['parse']}: the person's clothing mask is empty "
            f"(no label in {CLOTHING_LABELS}: upper-clothes, dress, coat)",
        )


def read_pose(path: str | Path, key: str | None = None) -> np.ndarray | None:
    """OpenPose keypoints of the first person: float32 (K, 3) ``x, y, confidence``; None when the
    file is absent. ``key`` defaults to whichever of ``pose_keypoints_2d`` / ``pose_keypoints``
    the file has.

    Raises:
        FormatError: Invalid JSON (with its line), no person, or a list whose length is not a
            multiple of 3.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FormatError(path, f"invalid JSON: {err.msg}", err.lineno) from None
    people = data.get("people") if isinstance(data, dict) else None
    if not people:
        raise FormatError(path, "no person ('people' is missing or empty)")
    keys = [key] if key else ["pose_keypoints_2d", "pose_keypoints"]
    values = next((people[0][k] for k in keys if k in people[0]), None)
    if values is None or len(values) % 3:
        raise FormatError(path, f"expected {' or '.join(keys)} as a list of x, y, c triples")
    return np.asarray(values, dtype=np.float32).reshape(-1, 3)


def write_pose(path: str | Path, keypoints: np.ndarray, key: str = "pose_keypoints") -> None:
    """Write OpenPose JSON for one person; ``keypoints`` (K, 3) ``x, y, confidence``."""
    people = [{key: [round(float(v), 3) for v in np.asarray(keypoints).reshape(-1)]}]
    Path(path).write_text(json.dumps({"version": 1.0, "people": people}) + "\n")


def write_parse(path: str | Path, labels: np.ndarray) -> None:
    """Write uint8 (H, W) LIP labels as a palette PNG with LIP's colours."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    palette = [c for colour in LIP_PALETTE for c in colour]
    image.putpalette(palette + [0] * (768 - len(palette)))
    image.save(path, format="PNG")


def write_jpeg(path: str | Path, array: np.ndarray, quality: int = 95) -> None:
    """Write uint8 (H, W, 3) RGB or (H, W) gray as JPEG without chroma subsampling."""
    Image.fromarray(array).save(path, format="JPEG", quality=quality, subsampling=0)


def _check_size(pair: Pair, path: Path, got: tuple[int, ...], size: tuple[int, int]) -> None:
    if tuple(got[:2]) != tuple(size):
        _fail(pair, f"{path} is {got[0]}x{got[1]} (H x W), expected {size[0]}x{size[1]}")


def _at(pair: Pair, read, path: Path):
    """``read(path)``, a FormatError re-raised at the pairs line (the file named in it)."""
    try:
        return read(path)
    except FormatError as err:
        _fail(pair, f"{err.path}: {err.reason}")


def _fail(pair: Pair, message: str):
    raise FormatError(pair.source, message, pair.line)


def missing_dataset(root: Path, missing: Path) -> DatasetNotFoundError:
    """The error for an absent VITON root or pairs file."""
    return DatasetNotFoundError("VITON", root, missing, how_to_get(root))
