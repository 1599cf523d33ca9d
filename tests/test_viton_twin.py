"""The VITON twin (UST spec, section 9): layout, determinism, its generator self-tests (masks
binary, parse label 5 == warped S0 minus occluders, JPEG round trip keeps mask IoU >= 0.98), exact
catalog correspondences, cross ground truth, and the planted duplicates the cleaning must find."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from datamodules.formats.viton import (
    CLOTHING_LABELS,
    check_pair_content,
    check_pair_files,
    clothing_mask,
    cross_files,
    detect_layout,
    read_cloth_mask,
    read_pairs,
    read_parse,
    read_pose,
)
from datamodules.synthetic.viton import (
    PALETTE,
    Item,
    forward_point,
    make_viton_synth,
    person_layers,
    read_sidecar,
    render_item,
    render_person,
)
from datamodules.viton_cleaning import clean_viton

H, W = 64, 48


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("viton_synth")
    summary = make_viton_synth(root, n_train=400, n_test=48, H=H, W=W, seed=0)
    return root, summary, read_sidecar(root)


def _rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def _all_pairs(root):
    return [(s, p) for s in ("train", "test") for p in read_pairs(root / f"{s}_pairs.txt")]


def test_layout_is_what_the_reader_checks(twin):
    root, summary, sidecar = twin
    assert summary["train"] == 400 and summary["test"] == 48 and summary["cross_pairs"] == 48
    layout = detect_layout(root)
    assert layout.name == "viton"
    pairs = _all_pairs(root)
    assert len(pairs) == 448 and pairs[0][1].person == "000001_0.jpg"
    assert all(p.cloth == p.person.replace("_0.jpg", "_1.jpg") for _, p in pairs)
    for split, pair in pairs:
        check_pair_files(root, split, layout, [pair])
        check_pair_content(root, split, layout, pair, (H, W))
    assert set(sidecar["items"]) == {p.cloth for _, p in pairs}
    pose = read_pose(root / "train" / "pose" / "000001_0_keypoints.json", "pose_keypoints")
    assert pose.shape == (18, 3)
    neck, right_shoulder, left_shoulder = pose[1], pose[2], pose[5]  # OpenPose-18
    assert right_shoulder[0] < neck[0] < left_shoulder[0]  # the person's right is image left
    assert (pose[:, 2] == 1).sum() >= 12  # knees and ankles are below the frame


def test_deterministic_per_seed(tmp_path):
    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first = files(_small(tmp_path / "a", 0))
    assert first == files(_small(tmp_path / "b", 0))
    other = files(_small(tmp_path / "c", 1))
    changed = [k for k in first if k.suffix == ".jpg" and first[k] != other.get(k)]
    assert len(changed) > 0.9 * sum(k.suffix == ".jpg" for k in first)


def _small(root, seed):
    make_viton_synth(root, n_train=40, n_test=12, H=H, W=W, seed=seed)
    return root


def test_items_are_mirror_symmetric_and_avoid_the_context_gray():
    rng = np.random.default_rng(0)
    from datamodules.synthetic.viton import sample_item

    for _ in range(30):
        art = render_item(sample_item(rng), H, W)
        assert (art["image"] == art["image"][:, ::-1]).all()
        assert (art["mask"] == art["mask"][:, ::-1]).all()
    assert (np.abs(PALETTE.astype(int) - 128).max(1) > 40).all()  # no mid-gray
    assert (PALETTE.astype(int).min(1) < 200).all()  # no white


def test_masks_binary_and_jpeg_round_trip(twin):
    """Generator masks are binary; the cloth-mask JPEG read back (> 127) keeps IoU >= 0.98 with
    S0, and its values stay near 0 or 255."""
    root, _, sidecar = twin
    for split, pair in _all_pairs(root):
        art = render_item(sidecar["items"][pair.cloth], H, W)
        assert art["mask"].dtype == bool
        stored = np.asarray(Image.open(root / split / "cloth-mask" / pair.cloth).convert("L"))
        assert (np.minimum(stored, 255 - stored.astype(int)) < 64).mean() > 0.97
        read = read_cloth_mask(root / split / "cloth-mask" / pair.cloth)
        iou = (read & art["mask"]).sum() / (read | art["mask"]).sum()
        assert iou >= 0.98, (pair.cloth, iou)
        labels = read_parse(root / split / "image-parse" / pair.person.replace(".jpg", ".png"))
        assert set(np.unique(labels).tolist()) <= {0, 2, 5, 9, 13, 14, 15}


def test_parse_label_5_is_the_warped_silhouette_minus_occluders(twin):
    root, _, sidecar = twin
    occluded = 0
    for split, pair in _all_pairs(root):
        person, item = sidecar["persons"][pair.person], sidecar["items"][pair.cloth]
        layers = person_layers(person, item, H, W)
        front = layers["hair"] | layers["face"] | layers["occluder"]
        labels = read_parse(root / split / "image-parse" / pair.person.replace(".jpg", ".png"))
        assert ((labels == 5) == (layers["shirt"] & ~front)).all(), pair.person
        assert (clothing_mask(labels) == (labels == 5)).all()  # no dress or coat
        occluded += person.occluder is not None and (layers["occluder"] & layers["shirt"]).any()
    assert 0.1 < occluded / 448 < 0.3  # p = 0.2 forearm occluders that do cover the shirt


def test_every_shirt_pixel_has_an_exact_catalog_correspondence(twin):
    """The canonical point of each shirt pixel maps forward (arm rotation, pose, drape) back onto
    that pixel's centre, and a solid item's shirt is its colour times the shading."""
    _, _, sidecar = twin
    names = list(sidecar["persons"])[:40]
    for name in names:
        person = sidecar["persons"][name]
        item = sidecar["items"][name.replace("_0.jpg", "_1.jpg")]
        layers = person_layers(person, item, H, W)
        rows, cols = np.nonzero(layers["shirt"])
        for y, x in list(zip(rows, cols, strict=True))[::7]:
            q = layers["correspondence"][y, x]
            centre = ((x + 0.5) * 192 / W, (y + 0.5) * 256 / H)
            error = min(
                math.dist(forward_point(person, item, q, part), centre)
                for part in ("torso", "left", "right")
            )
            assert error < 1e-3
    person = sidecar["persons"][names[0]]
    solid = Item("solid", 3, 4, 1 / 8, "long", 1.0, None)
    out = render_person(person, solid, H, W)
    visible = out["labels"] == 5
    colour = out["image"][visible].astype(float) / PALETTE[3].astype(float)
    assert (colour > 0.88).all() and (colour < 1.01).all()  # x (1 - 0.1 noise), rounded


def test_cross_ground_truth(twin):
    """Person i wearing item j: i's pose and look, j's shirt."""
    root, _, sidecar = twin
    cross = read_pairs(root / "test_cross_pairs.txt")
    assert len(cross) == 48 and all(p.cloth != p.person.replace("_0", "_1") for p in cross)
    for pair in cross[:12]:
        files = cross_files(root, pair)
        person, item = sidecar["persons"][pair.person], sidecar["items"][pair.cloth]
        expected = render_person(person, item, H, W)
        assert np.abs(_rgb(files["image"]) - expected["image"]).mean() < 3
        assert (read_parse(files["parse"]) == expected["labels"]).all()
        own = read_parse(root / "test" / "image-parse" / pair.person.replace(".jpg", ".png"))
        background = (own == 0) & (expected["labels"] == 0)
        photo = _rgb(root / "test" / "image" / pair.person)
        assert np.abs(_rgb(files["image"]) - photo)[background].mean() < 3  # same person, scene
        shirt = (own == 5) & (expected["labels"] == 5)
        assert np.abs(_rgb(files["image"]) - photo)[shirt].mean() > 3  # another item


def test_cleaning_finds_exactly_the_planted_duplicates(tmp_path, twin):
    root, summary, sidecar = twin
    report = clean_viton(root, size=(H, W), progress=False)
    found = {
        (d["split"], d["cloth"], d["kind"], d["kept_split"], d["kept_cloth"])
        for d in report.dropped
    }
    planted = {
        (d["split"], d["cloth"], d["kind"], d["source_split"], d["source_cloth"])
        for d in sidecar["duplicates"]
    }
    kinds = [d[2] for d in planted]
    assert kinds.count("exact") == 6 and kinds.count("near") == 4
    assert sum(d[0] == "test" and d[3] == "train" for d in planted) == 3
    assert found == planted
    assert report.counts()["kept"] == {"train": 394, "test": 44}
    for split in ("train", "test"):
        clean = read_pairs(root / f"clean_{split}_pairs.txt")
        assert len(clean) == len(report.kept[split])
    assert set(CLOTHING_LABELS) == {5, 6, 7}
