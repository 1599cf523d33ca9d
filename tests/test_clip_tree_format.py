"""The clip-tree format: write -> read round trips (name order, identity and clip indices, landmarks
aligned to their frames whatever the table order, hard links), and one test per bad input, each
naming the file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_celeba_format import edit_line, expect_error  # the same checks of errors

from datamodules.formats import clip_tree as fmt
from datamodules.formats.errors import DatasetNotFoundError

# (identity, clip, frame) written in this deliberately unsorted order; name order is
# alice/c1/{a,b}, alice/zz/{0}, bob/c1/{0,1,2}
FRAMES = [
    ("bob", "c1", "2"),
    ("alice", "zz", "0"),
    ("bob", "c1", "0"),
    ("alice", "c1", "b"),
    ("alice", "c1", "a"),
    ("bob", "c1", "1"),
]
SORTED = [
    "alice/c1/a.jpg",
    "alice/c1/b.jpg",
    "alice/zz/0.jpg",
    "bob/c1/0.jpg",
    "bob/c1/1.jpg",
    "bob/c1/2.jpg",
]


def _sources(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    files = []
    for i in range(n):
        files.append(folder / f"src{i}.jpg")
        Image.new("RGB", (6, 5), (40 * i, 10, 200 - 30 * i)).save(files[-1])
    return files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The FRAMES tree; frame k's landmarks are 100 * k + (0 ... 9)."""
    sources = _sources(tmp_path / "src", len(FRAMES))
    paths = [fmt.frame_path(*f) for f in FRAMES]
    marks = 100 * torch.arange(len(FRAMES))[:, None] + torch.arange(10)
    fmt.write_clip_tree(tmp_path / "vox", sources, paths, marks)
    return tmp_path / "vox"


def test_round_trip_in_name_order(tree: Path, tmp_path: Path):
    index = fmt.read_clip_tree(tree)
    assert index.paths == SORTED
    assert index.identity_names == ["alice", "bob"]
    assert index.clip_names == ["alice/c1", "alice/zz", "bob/c1"]
    assert index.identity.tolist() == [0, 0, 0, 1, 1, 1]
    assert index.clip.tolist() == [0, 0, 1, 2, 2, 2]
    assert index.clip_identity.tolist() == [0, 0, 1]
    # each frame keeps its own row: SORTED[i] was written as FRAMES[k] with landmarks 100 k + j
    written = {fmt.frame_path(*f): k for k, f in enumerate(FRAMES)}
    expected = torch.tensor([[100 * written[p] + j for j in range(10)] for p in SORTED])
    assert torch.equal(index.landmarks, expected) and index.landmarks.dtype == torch.long
    # the frames are the sources' bytes (hard links on this file system)
    for k, f in enumerate(FRAMES):
        target = tree / fmt.frame_path(*f)
        source = tmp_path / "src" / f"src{k}.jpg"
        assert target.read_bytes() == source.read_bytes()
        assert os.stat(target).st_ino == os.stat(source).st_ino
    # the table is CelebA's landmark format, rows in the order written
    lines = (tree / fmt.LANDMARK_FILE).read_text().splitlines()
    assert lines[0] == "6" and lines[1].split()[:2] == ["lefteye_x", "lefteye_y"]
    assert lines[2].split() == ["bob/c1/2.jpg", *[str(j) for j in range(10)]]


def test_copies_when_links_fail(tmp_path: Path, monkeypatch):
    def no_links(source, target):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    sources = _sources(tmp_path / "src", 1)
    fmt.write_clip_tree(tmp_path / "vox", sources, ["p/c/f.jpg"], torch.zeros(1, 10))
    target = tmp_path / "vox" / "p" / "c" / "f.jpg"
    assert target.read_bytes() == sources[0].read_bytes()
    assert os.stat(target).st_ino != os.stat(sources[0]).st_ino


def test_rewriting_replaces_the_previous_tree(tree: Path, tmp_path: Path):
    (tree / "notes.txt").write_text("kept")  # not a frame: left alone
    sources = _sources(tmp_path / "new", 2)
    fmt.write_clip_tree(tree, sources, ["carol/x/0.jpg", "carol/x/1.jpg"], torch.ones(2, 10))
    index = fmt.read_clip_tree(tree)
    assert index.paths == ["carol/x/0.jpg", "carol/x/1.jpg"]
    assert not (tree / "alice").exists() and (tree / "notes.txt").exists()
    with pytest.raises(ValueError, match="not empty and holds no list_landmarks_align.txt"):
        fmt.write_clip_tree(tmp_path / "src", sources[:1], ["a/b/c.jpg"], torch.ones(1, 10))


def test_writer_refuses_bad_paths_and_lengths(tmp_path: Path):
    src = _sources(tmp_path / "src", 2)
    marks = torch.zeros(1, 10)
    for bad in ("a/b.jpg", "a/b/c.png", "a/b/c/d.jpg", "a b/c/d.jpg", "a/../d.jpg", "a//d.jpg"):
        with pytest.raises(ValueError, match="frame path|name"):
            fmt.write_clip_tree(tmp_path / "vox", src[:1], [bad], marks)
    with pytest.raises(ValueError, match="repeat"):
        fmt.write_clip_tree(tmp_path / "vox", src, ["a/b/c.jpg"] * 2, torch.zeros(2, 10))
    with pytest.raises(ValueError, match="2 sources, 1 paths and 1 landmark rows"):
        fmt.write_clip_tree(tmp_path / "vox", src, ["a/b/c.jpg"], marks)
    with pytest.raises(ValueError, match=r"clip name 'x y'"):
        fmt.frame_path("a", "x y", "0")
    assert not (tmp_path / "vox").exists()


def test_missing_root_or_table_says_how_to_get_one(tmp_path: Path, tree: Path):
    with pytest.raises(DatasetNotFoundError) as info:
        fmt.read_clip_tree(tmp_path / "nowhere")
    assert info.value.missing == tmp_path / "nowhere"
    assert "make data DATASET=synthetic-faces OUT=DIR" in str(info.value)
    (tree / fmt.LANDMARK_FILE).unlink()
    with pytest.raises(DatasetNotFoundError, match="list_landmarks_align.txt does not exist"):
        fmt.read_clip_tree(tree)


def test_a_row_without_a_frame_names_its_line(tree: Path):
    table = tree / fmt.LANDMARK_FILE
    (tree / "alice" / "zz" / "0.jpg").unlink()  # listed at line 4 (third row)
    (tree / "alice" / "zz" / "1.jpg").write_bytes(b"x")  # keeps the clip non-empty
    expect_error(lambda: fmt.read_clip_tree(tree), table, 4, "alice/zz/0.jpg has no frame")


def test_a_frame_without_a_row_names_the_count_line(tree: Path):
    table = tree / fmt.LANDMARK_FILE
    edit_line(table, 6, None)  # the row of alice/c1/b.jpg (fourth row)
    edit_line(table, 1, "5")
    expect_error(
        lambda: fmt.read_clip_tree(tree),
        table,
        1,
        "frame alice/c1/b.jpg has no landmark row",
        "lists 5 frames, the tree holds 6",
    )


def test_malformed_tables_are_caught_by_celebas_landmark_checks(tree: Path):
    table = tree / fmt.LANDMARK_FILE
    edit_line(table, 2, "lefteye_x lefteye_y")
    expect_error(lambda: fmt.read_clip_tree(tree), table, 2, "expected the header")


def test_empty_clips_identities_and_trees_are_refused(tree: Path, tmp_path: Path):
    (tree / "dave" / "c0").mkdir(parents=True)
    (tree / "dave" / "c0" / "readme.txt").write_text("no frames")
    expect_error(lambda: fmt.read_clip_tree(tree), tree / "dave" / "c0", None, "empty clip")
    (tree / "dave" / "c0" / "readme.txt").unlink()
    (tree / "dave" / "c0").rmdir()
    expect_error(lambda: fmt.read_clip_tree(tree), tree / "dave", None, "holds no clip folder")
    (tree / "dave").rmdir()
    (tree / "bob" / "c 2").mkdir()
    expect_error(lambda: fmt.read_clip_tree(tree), tree / "bob" / "c 2", None, "whitespace")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / fmt.LANDMARK_FILE).write_text("0\n" + " ".join(fmt.celeba_format.LANDMARK_HEADER))
    expect_error(lambda: fmt.read_clip_tree(empty), empty, None, "no <identity>/<clip>/<frame>")
