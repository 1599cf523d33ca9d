"""CelebA readers: the committed fixture, writer -> reader round trips, and one test per bad input.

``tests/fixtures/celeba_mini/`` holds the official tables for 6 images in the release's exact text
layout (count line, names line with a trailing space, double-space padded +1/-1 values, padded
bbox and landmark columns). Its attribute value at row r, column j (both 0-based) is +1 exactly
when (r + j) % 3 == 0.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from datamodules.formats import celeba as fmt
from datamodules.formats.errors import DatasetNotFoundError, FormatError

FIXTURE = Path(__file__).parent / "fixtures" / "celeba_mini"
NAMES = [f"{i:06d}.jpg" for i in range(1, 7)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the fixture tables plus an (empty) image folder: a complete CelebA root."""
    root = tmp_path / "celeba"
    shutil.copytree(FIXTURE, root)
    (root / fmt.IMAGE_DIR).mkdir()
    return root


def edit_line(path: Path, line: int, new: str | None) -> None:
    """Replace 1-based ``line`` of ``path`` by ``new`` (None deletes it)."""
    lines = path.read_text().splitlines()
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n")


def expect_error(call, path: Path, line: int | None, *fragments: str) -> str:
    with pytest.raises(FormatError) as info:
        call()
    message = str(info.value)
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert message.startswith(where), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ----------------------------------------------------------------------------------------------
# The fixture, read
# ----------------------------------------------------------------------------------------------


def test_attribute_table_fixture():
    names, attribute_names, attributes = fmt.read_attribute_table(FIXTURE / fmt.ATTR_FILE)
    assert names == NAMES
    assert tuple(attribute_names) == fmt.ATTRIBUTE_NAMES
    assert attributes.dtype == torch.uint8 and attributes.shape == (6, 40)
    r, j = torch.meshgrid(torch.arange(6), torch.arange(40), indexing="ij")
    assert torch.equal(attributes, ((r + j) % 3 == 0).to(torch.uint8))
    assert attributes[0, 0] == 1 and attributes[0, 1] == 0  # first row reads " 1 -1 ..."


def test_pairs_and_tables_fixture():
    assert fmt.read_partition(FIXTURE / fmt.PARTITION_FILE) == dict(
        zip(NAMES, [0, 0, 0, 1, 2, 2], strict=True)
    )
    identities = [2880, 2937, 8692, 2880, 5805, 2937]
    assert fmt.read_identities(FIXTURE / fmt.IDENTITY_FILE) == dict(
        zip(NAMES, identities, strict=True)
    )
    names, boxes = fmt.read_bboxes(FIXTURE / fmt.BBOX_FILE)
    assert names == NAMES and boxes.dtype == torch.long and boxes.shape == (6, 4)
    assert boxes[0].tolist() == [95, 71, 226, 313] and boxes[3].tolist() == [622, 257, 564, 781]
    names, marks = fmt.read_landmarks(FIXTURE / fmt.LANDMARK_FILE)
    assert names == NAMES and marks.shape == (6, 10)
    assert marks[0].tolist() == [69, 109, 106, 113, 77, 142, 73, 152, 108, 154]


def test_read_celeba_aligns_tables_to_attribute_order(root: Path):
    # Reverse the identity file's row order: values must still land on the right images.
    lines = (root / fmt.IDENTITY_FILE).read_text().splitlines()
    (root / fmt.IDENTITY_FILE).write_text("\n".join(reversed(lines)) + "\n")
    index = fmt.read_celeba(root, bboxes=True, landmarks=True)
    assert index.names == NAMES
    assert index.partition.tolist() == [0, 0, 0, 1, 2, 2]
    assert index.identity.tolist() == [2880, 2937, 8692, 2880, 5805, 2937]
    assert index.bboxes[4].tolist() == [236, 109, 120, 166]
    assert index.landmarks[5, :2].tolist() == [71, 111]
    assert index.table_line(0) == 3 and index.image_dir == root / "img_align_celeba"


def test_optional_tables_needed_only_when_asked(root: Path):
    (root / fmt.BBOX_FILE).unlink()
    (root / fmt.LANDMARK_FILE).unlink()
    index = fmt.read_celeba(root)
    assert index.bboxes is None and index.landmarks is None
    with pytest.raises(DatasetNotFoundError, match="list_bbox_celeba.txt"):
        fmt.read_celeba(root, bboxes=True)


# ----------------------------------------------------------------------------------------------
# Writer -> reader round trips
# ----------------------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path):
    g = torch.Generator().manual_seed(0)
    names = [fmt.image_name(i) for i in range(1, 31)]
    attributes = torch.randint(0, 2, (30, 40), generator=g, dtype=torch.uint8)
    splits = torch.randint(0, 3, (30,), generator=g).tolist()
    identities = torch.randint(1, 10178, (30,), generator=g).tolist()
    boxes = torch.randint(0, 500, (30, 4), generator=g)
    marks = torch.randint(0, 218, (30, 10), generator=g)
    fmt.write_attribute_table(tmp_path / fmt.ATTR_FILE, names, attributes)
    fmt.write_partition(tmp_path / fmt.PARTITION_FILE, names, splits)
    fmt.write_identities(tmp_path / fmt.IDENTITY_FILE, names, identities)
    fmt.write_bboxes(tmp_path / fmt.BBOX_FILE, names, boxes)
    fmt.write_landmarks(tmp_path / fmt.LANDMARK_FILE, names, marks)
    (tmp_path / fmt.IMAGE_DIR).mkdir()
    index = fmt.read_celeba(tmp_path, bboxes=True, landmarks=True)
    assert index.names == names
    assert torch.equal(index.attributes, attributes)
    assert index.partition.tolist() == splits and index.identity.tolist() == identities
    assert torch.equal(index.bboxes, boxes) and torch.equal(index.landmarks, marks)


def test_round_trip_custom_names(tmp_path: Path):
    # The attribute-table format also carries other label sets (e.g. hard labels written for FFHQ).
    names, columns = ["00000.png", "00001.png"], ["Smiling", "Eyeglasses"]
    attributes = torch.tensor([[1, 0], [0, 1]], dtype=torch.uint8)
    fmt.write_attribute_table(tmp_path / "labels.txt", names, attributes, names=columns)
    read_names, read_columns, read = fmt.read_attribute_table(tmp_path / "labels.txt")
    assert (read_names, read_columns) == (names, columns) and torch.equal(read, attributes)


# ----------------------------------------------------------------------------------------------
# Bad inputs: each one a FormatError naming the file and the line
# ----------------------------------------------------------------------------------------------


def test_count_line_not_integer(root: Path):
    path = root / fmt.ATTR_FILE
    edit_line(path, 1, "six")
    expect_error(lambda: fmt.read_celeba(root), path, 1, "image count", "'six'")


def test_truncated_attribute_table(root: Path):
    path = root / fmt.ATTR_FILE
    path.write_text("\n".join(path.read_text().splitlines()[:6]) + "\n")  # 4 of 6 rows
    expect_error(lambda: fmt.read_celeba(root), path, 1, "says 6 images but 4 rows", "truncated")


def test_truncated_mid_row(root: Path):
    path = root / fmt.ATTR_FILE
    path.write_text(path.read_text()[:-40])  # the last row loses its last 13 values
    expect_error(lambda: fmt.read_attribute_table(path), path, 8, "40 values, got 27")


def test_table_cut_mid_row_names_that_row_not_the_count_line(root: Path):
    path = root / fmt.ATTR_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n" + lines[5][:60])  # cut inside row 4 (line 6)
    expect_error(
        lambda: fmt.read_celeba(root), path, 6, "40 values, got", "says 6 images but 4 rows"
    )


def test_bbox_table_cut_mid_row_names_that_row(root: Path):
    path = root / fmt.BBOX_FILE
    path.write_text(path.read_text()[: path.read_text().index("000004.jpg") + 20])
    expect_error(lambda: fmt.read_celeba(root, bboxes=True), path, 6, "4 values, got", "truncated")


def test_attribute_row_wrong_length(root: Path):
    path = root / fmt.ATTR_FILE
    row = path.read_text().splitlines()[4]
    edit_line(path, 5, row + "  1")
    expect_error(lambda: fmt.read_celeba(root), path, 5, "40 values, got 41")


def test_attribute_value_not_sign(root: Path):
    path = root / fmt.ATTR_FILE
    fields = path.read_text().splitlines()[5].split()
    fields[1 + fmt.ATTRIBUTE_NAMES.index("Smiling")] = "0"
    edit_line(path, 6, " ".join(fields))
    expect_error(lambda: fmt.read_celeba(root), path, 6, "'0' for Smiling", "not 1 or -1")


def test_attribute_names_not_official(root: Path):
    path = root / fmt.ATTR_FILE
    edit_line(path, 2, " ".join(fmt.ATTRIBUTE_NAMES).replace("Smiling", "Smiles"))
    expect_error(lambda: fmt.read_celeba(root), path, 2, "official", "Smiles")


def test_duplicate_image_in_attribute_table(root: Path):
    path = root / fmt.ATTR_FILE
    row = path.read_text().splitlines()[2]
    edit_line(path, 4, row)  # 000001.jpg again on line 4
    expect_error(lambda: fmt.read_celeba(root), path, 4, "000001.jpg repeats", "line 3")


def test_empty_line_inside_table(root: Path):
    path = root / fmt.PARTITION_FILE
    edit_line(path, 3, "")
    expect_error(lambda: fmt.read_celeba(root), path, 3, "empty line")


def test_unknown_split_code(root: Path):
    path = root / fmt.PARTITION_FILE
    edit_line(path, 4, "000004.jpg 3")
    expect_error(lambda: fmt.read_celeba(root), path, 4, "unknown split code 3", "000004.jpg")


def test_split_code_not_integer(root: Path):
    path = root / fmt.PARTITION_FILE
    edit_line(path, 2, "000002.jpg train")
    expect_error(lambda: fmt.read_celeba(root), path, 2, "'train' is not an integer")


def test_identity_not_integer(root: Path):
    path = root / fmt.IDENTITY_FILE
    edit_line(path, 5, "000005.jpg 58.5")
    expect_error(lambda: fmt.read_celeba(root), path, 5, "identity '58.5' is not an integer")


def test_identity_row_wrong_length(root: Path):
    path = root / fmt.IDENTITY_FILE
    edit_line(path, 6, "000006.jpg 2937 7")
    expect_error(lambda: fmt.read_celeba(root), path, 6, "an image name and 1 value, got 2")


def test_bbox_not_integer(root: Path):
    path = root / fmt.BBOX_FILE
    edit_line(path, 4, "000002.jpg 72 94 2x1 306")
    expect_error(lambda: fmt.read_celeba(root, bboxes=True), path, 4, "width '2x1'")


def test_bbox_wrong_header(root: Path):
    path = root / fmt.BBOX_FILE
    edit_line(path, 2, "image_id x y w h")
    expect_error(lambda: fmt.read_bboxes(path), path, 2, "expected the header")


def test_landmark_row_wrong_length(root: Path):
    path = root / fmt.LANDMARK_FILE
    edit_line(path, 8, "000006.jpg 71 111 106 110 94 131 74 154 102")
    expect_error(lambda: fmt.read_celeba(root, landmarks=True), path, 8, "10 values, got 9")


def test_counts_disagree(root: Path):
    edit_line(root / fmt.IDENTITY_FILE, 5, None)  # 000005.jpg has no identity
    message = expect_error(
        lambda: fmt.read_celeba(root), root / fmt.ATTR_FILE, 7, "000005.jpg has no row"
    )
    assert "counts disagree: 5 in identity_CelebA.txt, 6 in list_attr_celeba.txt" in message


def test_names_differ_between_tables(root: Path):
    path = root / fmt.PARTITION_FILE
    edit_line(path, 3, "000099.jpg 0")
    expect_error(lambda: fmt.read_celeba(root), path, 3, "000099.jpg is not listed")


def test_names_differ_in_bbox_table(root: Path):
    path = root / fmt.BBOX_FILE
    edit_line(path, 3, "000007.jpg 95 71 226 313")
    expect_error(lambda: fmt.read_celeba(root, bboxes=True), path, 3, "000007.jpg is not listed")


def test_missing_root_says_where_to_get_celeba(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as info:
        fmt.read_celeba(tmp_path / "nowhere")
    message = str(info.value)
    assert "mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in message
    assert "img_align_celeba.zip" in message and "Anno/" in message and "Eval/" in message
    for name in (fmt.ATTR_FILE, fmt.PARTITION_FILE, fmt.IDENTITY_FILE, fmt.BBOX_FILE):
        assert name in message
    assert "list_landmarks_align_celeba.txt" in message and "img_align_celeba/" in message


@pytest.mark.parametrize("missing", [fmt.IDENTITY_FILE, fmt.PARTITION_FILE, fmt.IMAGE_DIR])
def test_missing_file(root: Path, missing: str):
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        fmt.read_celeba(root)
    assert f"{target} does not exist" in str(info.value)
    assert "mmlab.ie.cuhk.edu.hk" in str(info.value)


def test_offsetting_row_errors_are_caught(root: Path):
    # Line 4 gains a value and line 5 loses one: the total token count still adds up.
    path = root / fmt.ATTR_FILE
    lines = path.read_text().splitlines()
    edit_line(path, 4, lines[3] + "  1")
    edit_line(path, 5, lines[4].rsplit(" ", 1)[0])
    expect_error(lambda: fmt.read_attribute_table(path), path, 4, "40 values, got 41")
    ids = root / fmt.IDENTITY_FILE
    edit_line(ids, 2, "000002.jpg 2937 3")
    edit_line(ids, 3, "000003.jpg")
    expect_error(lambda: fmt.read_identities(ids), ids, 2, "1 value, got 2")


def test_numeric_image_names_take_the_line_by_line_path(tmp_path: Path):
    # Names that look like numbers defeat the fast alignment proof; the strict parser reads them.
    path = tmp_path / "pairs.txt"
    fmt.write_identities(path, ["7", "8", "9"], [70, 80, 90])
    assert fmt.read_identities(path) == {"7": 70, "8": 80, "9": 90}
    edit_line(path, 2, "8 80 1")
    expect_error(lambda: fmt.read_identities(path), path, 2, "got 2")
