"""VITON's formats (CP-VTON and VITON-HD layouts) and the duplicate cleaning, on hand-made roots.

dHash and the thumbnails are checked against a numpy reimplementation of area resampling (overlap
weights, written out here) and against images whose hash is known by construction.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.formats.viton import (
    LAYOUTS,
    check_pair_content,
    check_pair_files,
    cloth_files,
    clothing_mask,
    detect_layout,
    missing_dataset,
    read_cloth_mask,
    read_pairs,
    read_parse,
    read_pose,
    write_jpeg,
    write_pairs,
    write_parse,
    write_pose,
)
from datamodules.prepare import main as prepare
from datamodules.viton_cleaning import (
    PAPER_PER_DOMAIN,
    clean_viton,
    dhash,
    duplicate_edges,
    duplicate_groups,
    hamming,
    pixel_digest,
    thumbnail,
)

SIZE = (16, 12)  # (H, W) of the hand-made roots


def _cloth(seed: int, size=SIZE) -> np.ndarray:
    """A random-looking item on white: distinct seeds give clearly different images."""
    rng = np.random.default_rng(seed)
    image = np.full((*size, 3), 255, np.uint8)
    h, w = size
    image[h // 4 : h - 2, w // 4 : w - w // 4] = rng.integers(0, 200, (3,), dtype=np.uint8)
    image[h // 2 : h - 2 : 2, w // 4 : w - w // 4] = rng.integers(0, 200, (3,), dtype=np.uint8)
    return image


def _parse(size=SIZE, label: int = 5) -> np.ndarray:
    labels = np.zeros(size, np.uint8)
    h, w = size
    labels[h // 4 : h - 2, w // 4 : w - w // 4] = label
    labels[: h // 4, w // 3 : w - w // 3] = 13
    return labels


def write_root(root, splits: dict[str, list[tuple[str, str, np.ndarray]]], layout="viton"):
    """A VITON root: per split, pairs ``(person, cloth name, cloth image)``."""
    spec = LAYOUTS[layout]
    for split, pairs in splits.items():
        folder = root / split
        for sub in ("image", "cloth", "cloth-mask", spec.parse_dir, spec.pose_dir):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for person, cloth, image in pairs:
            size = image.shape[:2]
            write_jpeg(folder / "image" / person, np.full((*size, 3), 90, np.uint8))
            write_parse(folder / spec.parse_dir / person.replace(".jpg", ".png"), _parse(size))
            write_jpeg(folder / "cloth" / cloth, image)
            mask = (image.min(-1) < 250).astype(np.uint8) * 255
            write_jpeg(folder / "cloth-mask" / cloth, mask)
        write_pairs(root / f"{split}_pairs.txt", [(p, c) for p, c, _ in pairs])
    return root


def _simple_root(tmp_path, n=3):
    pairs = [(f"{k:06d}_0.jpg", f"{k:06d}_1.jpg", _cloth(k)) for k in range(1, n + 1)]
    return write_root(tmp_path, {"train": pairs, "test": []})


def test_pairs_round_trip_and_errors(tmp_path):
    path = tmp_path / "train_pairs.txt"
    write_pairs(path, [("000003_0.jpg", "000003_1.jpg"), ("000004_0.jpg", "000004_1.jpg")])
    pairs = read_pairs(path)
    assert [(p.person, p.cloth, p.line) for p in pairs] == [
        ("000003_0.jpg", "000003_1.jpg", 1),
        ("000004_0.jpg", "000004_1.jpg", 2),
    ]
    path.write_text("a.jpg b.jpg\na.jpg c.jpg\n")
    with pytest.raises(FormatError, match=r"train_pairs.txt:2: person a.jpg is listed twice"):
        read_pairs(path)
    path.write_text("a.jpg b.jpg\n\nc.jpg d.jpg\n")
    with pytest.raises(FormatError, match=r"train_pairs.txt:2: .*got an empty line"):
        read_pairs(path)
    path.write_text("a.jpg b.jpg extra\n")
    with pytest.raises(FormatError, match=r"train_pairs.txt:1: .*got 3 fields"):
        read_pairs(path)


def test_parse_pose_and_mask_round_trips(tmp_path):
    labels = np.arange(20, dtype=np.uint8).repeat(2).reshape(5, 8)
    write_parse(tmp_path / "p.png", labels)
    assert (read_parse(tmp_path / "p.png") == labels).all()
    assert clothing_mask(labels).sum() == 6  # labels 5, 6 and 7, twice each
    points = np.arange(54, dtype=np.float32).reshape(18, 3)
    write_pose(tmp_path / "a_keypoints.json", points)
    assert (read_pose(tmp_path / "a_keypoints.json") == points).all()
    write_pose(tmp_path / "b_keypoints.json", points[:2], key="pose_keypoints_2d")
    assert read_pose(tmp_path / "b_keypoints.json", "pose_keypoints_2d").shape == (2, 3)
    assert read_pose(tmp_path / "missing.json") is None
    (tmp_path / "c.json").write_text('{"people": [\n{"pose_keypoints": [1, 2]}]}')
    with pytest.raises(FormatError, match="c.json: expected"):
        read_pose(tmp_path / "c.json")
    (tmp_path / "d.json").write_text('{"people": [\n{oops}]}')
    with pytest.raises(FormatError, match=r"d.json:2: invalid JSON"):
        read_pose(tmp_path / "d.json")
    mask = np.zeros((16, 12), np.uint8)
    mask[4:12, 3:9] = 255
    write_jpeg(tmp_path / "m.jpg", mask)
    assert (read_cloth_mask(tmp_path / "m.jpg") == (mask > 0)).all()


def test_setup_checks_name_the_pairs_line(tmp_path):
    root = _simple_root(tmp_path)
    layout = detect_layout(root)
    assert layout.name == "viton"
    pairs = read_pairs(root / "train_pairs.txt")
    for pair in pairs:
        check_pair_content(root, "train", layout, pair, SIZE)
    (root / "train" / "cloth" / "000002_1.jpg").unlink()
    with pytest.raises(FormatError, match=r"train_pairs.txt:2: lists .*000002_1.jpg but it does"):
        check_pair_files(root, "train", layout, pairs)
    # wrong size, unknown labels, an empty item mask, an empty person mask, an RGB parse
    write_jpeg(root / "train" / "image" / "000001_0.jpg", np.zeros((20, 12, 3), np.uint8))
    with pytest.raises(FormatError, match=r"train_pairs.txt:1: .*000001_0.jpg is 20x12 .* 16x12"):
        check_pair_content(root, "train", layout, pairs[0], SIZE)
    write_parse(root / "train" / "image-parse" / "000003_0.png", _parse(label=25))
    with pytest.raises(FormatError, match=r"pairs.txt:3: .*000003_0.png: unknown LIP labels \[25]"):
        check_pair_content(root, "train", layout, pairs[2], SIZE)
    write_parse(root / "train" / "image-parse" / "000003_0.png", _parse(label=9))
    with pytest.raises(FormatError, match=r"pairs.txt:3: .*000003_0.png: the person's clothing"):
        check_pair_content(root, "train", layout, pairs[2], SIZE)
    write_jpeg(root / "train" / "cloth-mask" / "000003_1.jpg", np.full(SIZE, 40, np.uint8))
    with pytest.raises(FormatError, match=r"pairs.txt:3: .*000003_1.jpg: the item's mask is empty"):
        check_pair_content(root, "train", layout, pairs[2], SIZE)
    from PIL import Image

    Image.new("RGB", SIZE[::-1]).save(root / "train" / "image-parse" / "000002_0.png")
    (root / "train" / "cloth" / "000002_1.jpg").write_bytes(b"")
    write_jpeg(root / "train" / "cloth" / "000002_1.jpg", _cloth(2))
    with pytest.raises(FormatError, match=r"pairs.txt:2: .*000002_0.png: parse must hold one LIP"):
        check_pair_content(root, "train", layout, pairs[1], SIZE)


def test_viton_hd_layout(tmp_path):
    pairs = [(f"0000{k}_00.jpg", f"0000{k}_00.jpg", _cloth(k)) for k in range(3)]
    root = write_root(tmp_path, {"train": pairs, "test": pairs[:1]}, layout="viton_hd")
    (root / "train" / "cloth-mask" / "00001_00.jpg").rename(
        root / "train" / "cloth-mask" / "00001_00.png"
    )
    layout = detect_layout(root)
    assert layout == LAYOUTS["viton_hd"] and layout.size == (1024, 768)
    assert cloth_files(root, "train", "00001_00.jpg")["mask"].suffix == ".png"
    train = read_pairs(root / "train_pairs.txt")
    check_pair_files(root, "train", layout, train)
    for pair in train:
        check_pair_content(root, "train", layout, pair, SIZE)
    report = clean_viton(root, size=SIZE, progress=False)
    assert report.counts()["kept"] == {"train": 3, "test": 0}  # the test item is a train item


def test_missing_data_says_viton_is_not_distributed(tmp_path):
    message = str(missing_dataset(tmp_path / "viton", tmp_path / "viton"))
    assert "no longer distributed by its authors" in message
    assert "https://github.com/sergeywong/cp-vton" in message and "VITON-HD" in message
    assert "make data DATASET=viton ROOT=" in message
    assert "make data DATASET=synthetic-viton" in message
    with pytest.raises(DatasetNotFoundError, match="no longer distributed"):
        clean_viton(tmp_path / "viton", progress=False)


# --------------------------------------------------------------------------------------------------
# dHash and the near-duplicate rule against an independent reference
# --------------------------------------------------------------------------------------------------


def _area_weights(source: int, target: int) -> np.ndarray:
    """(target, source): the share of source pixel s in target cell t (overlap / cell length)."""
    scale = source / target
    weights = np.zeros((target, source))
    for t in range(target):
        for s in range(source):
            overlap = min(s + 1, (t + 1) * scale) - max(s, t * scale)
            weights[t, s] = max(overlap, 0) / scale
    return weights


def reference_dhash(thumb: np.ndarray) -> int:
    gray = thumb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    cells = _area_weights(gray.shape[0], 8) @ gray @ _area_weights(gray.shape[1], 9).T
    bits = "".join(
        "1" if cells[r, c + 1] > cells[r, c] else "0" for r in range(8) for c in range(8)
    )
    return int(bits, 2)


def test_dhash_against_reference_and_known_images():
    rng = np.random.default_rng(0)
    for _ in range(20):
        thumb = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
        assert dhash(thumb) == reference_dhash(thumb)
    ramp = np.broadcast_to(np.linspace(0, 255, 48)[None, :, None], (64, 48, 3)).astype(np.uint8)
    assert dhash(ramp) == 2**64 - 1  # brighter to the right everywhere
    assert dhash(ramp[:, ::-1].copy()) == 0
    stripes = np.zeros((64, 48, 3), np.uint8)
    for c in range(9):  # cell columns 0, 2, 4, ... dark, 1, 3, ... bright (48 / 9 px wide)
        stripes[:, round(c * 48 / 9) : round((c + 1) * 48 / 9)] = 200 * (c % 2)
    assert dhash(stripes) == int("10101010" * 8, 2)
    assert hamming(np.uint64(0b1011), np.uint64(0b0001)) == 2


def test_thumbnail_is_the_area_mean():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (256, 192, 3), dtype=np.uint8)
    expected = image.reshape(64, 4, 48, 4, 3).mean((1, 3))
    assert np.abs(thumbnail(image).astype(float) - expected).max() <= 0.5 + 1e-9


def test_duplicate_edges_and_groups():
    base = np.random.default_rng(2).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    near = np.clip(base.astype(int) + np.where(np.arange(48) % 2, 1, 0)[None, :, None], 0, 255)
    near = near.astype(np.uint8)
    shifted = np.roll(base, 1, axis=1)  # same content, one pixel over: far in pixels
    other = np.random.default_rng(3).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    images = [base, other, base.copy(), near, shifted]
    digests = [pixel_digest(i) for i in images]
    hashes = np.array([dhash(thumbnail(i)) for i in images], dtype=np.uint64)
    thumbs = np.stack([thumbnail(i) for i in images])
    edges = duplicate_edges(digests, hashes, thumbs, block=2)
    assert sorted(edges) == [(0, 2, "exact"), (0, 3, "near"), (2, 3, "near")]
    assert duplicate_groups(5, [(0, 2, "exact"), (2, 3, "near"), (1, 4, "near")]) == [
        [0, 2, 3],
        [1, 4],
    ]


def test_cleaning_keeps_one_pair_per_item(tmp_path, capsys):
    a, b, c, d = (_cloth(k, (64, 48)) for k in range(4))
    b_near = np.clip(b.astype(int) + 1, 0, 255).astype(np.uint8)
    train = [
        ("000001_0.jpg", "000001_1.jpg", a),
        ("000002_0.jpg", "000002_1.jpg", b),
        ("000003_0.jpg", "000003_1.jpg", c),
        ("000004_0.jpg", "000004_1.jpg", a),  # exact copy of 1
        ("000000_0.jpg", "000005_1.jpg", b_near),  # near copy of 2
    ]
    test = [
        ("000006_0.jpg", "000006_1.jpg", d),
        ("000007_0.jpg", "000007_1.jpg", c),  # duplicates a train item: dropped
        ("000008_0.jpg", "000008_1.jpg", d),  # duplicates a test item: dropped
    ]
    root = write_root(tmp_path, {"train": train, "test": test})
    prepare(["viton", "--root", str(root), "--size", "64", "48"])
    out = capsys.readouterr().out
    assert "train: 5 pairs -> 3 kept" in out and "test: 3 pairs -> 1 kept" in out
    assert f"{PAPER_PER_DOMAIN:,}" in out and "4 (paper" in out
    assert (root / "clean_train_pairs.txt").read_text().split("\n")[:3] == [
        "000001_0.jpg 000001_1.jpg",
        "000002_0.jpg 000002_1.jpg",
        "000003_0.jpg 000003_1.jpg",
    ]
    assert [p.person for p in read_pairs(root / "clean_test_pairs.txt")] == ["000006_0.jpg"]
    report = json.loads((root / "clean_report.json").read_text())
    dropped = {
        (d["split"], d["cloth"], d["kind"], d["kept_cloth"]) for d in report["dropped_pairs"]
    }
    assert dropped == {
        ("train", "000004_1.jpg", "exact", "000001_1.jpg"),
        ("train", "000005_1.jpg", "near", "000002_1.jpg"),
        ("test", "000007_1.jpg", "exact", "000003_1.jpg"),
        ("test", "000008_1.jpg", "exact", "000006_1.jpg"),
    }
    assert report["dropped_test_duplicating_train"] == 1 and report["kept_total"] == 4


def test_cleaning_stops_at_a_bad_pair_or_drops_it(tmp_path):
    root = _simple_root(tmp_path)
    write_parse(root / "train" / "image-parse" / "000002_0.png", _parse(label=9))
    with pytest.raises(FormatError, match=r"train_pairs.txt:2: .*clothing mask is empty"):
        clean_viton(root, size=SIZE, progress=False)
    report = clean_viton(root, size=SIZE, drop_invalid=True, progress=False)
    assert [p.person for p in report.kept["train"]] == ["000001_0.jpg", "000003_0.jpg"]
    assert len(report.invalid) == 1 and "clothing mask is empty" in report.invalid[0]["error"]
