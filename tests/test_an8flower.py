"""The an8Flower-like twin (spec vebi.md section 9 b): its class structure, masks, folds and
determinism; the reader's errors; the 5-fold DataModule; the ``make data`` command.

The class-structure checks use colour science, not the renderer: the HSV saturation of a pixel,
(max - min) / max of its RGB, separates the saturated class colours from everything else.
"""

from __future__ import annotations

import colorsys
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from datamodules.an8flower import An8FlowerDataModule
from datamodules.formats.an8flower import read_an8flower, read_pair
from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.prepare import main as prepare_main
from datamodules.synthetic.__main__ import main as twins_main
from datamodules.synthetic.an8flower import (
    CLASS_COLOURS,
    GAIN_RANGE,
    NUISANCE_COLOURS,
    PARTS,
    Pose,
    make_an8flower,
    render,
    sample_flower,
    stratified_folds,
)

PER_CLASS = 20  # 4 images per class and fold
SATURATED = 0.6  # class colours have saturation 0.85, nuisance and background at most 0.4


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("an8flower")
    for variant in ("single_6c", "double_12c"):
        make_an8flower(root, variant, per_class=PER_CLASS, size=64, seed=3)
    return root


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of RGB values in the last axis."""
    rgb = np.asarray(rgb, np.float64)
    top = rgb.max(-1)
    return np.where(top > 0, (top - rgb.min(-1)) / np.maximum(top, 1e-12), 0.0)


def hue_degrees(rgb) -> float:
    return 360 * colorsys.rgb_to_hsv(*(np.asarray(rgb, np.float64) / 255))[0]


def load(folder: Path, file: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(folder / file))
    mask = np.asarray(Image.open(folder / "masks" / file.removeprefix("images/")))
    return image, mask


def test_palettes_are_disjoint():
    for name, rgb in CLASS_COLOURS.items():
        assert saturation(rgb) >= 0.8, name
    hues = sorted(hue_degrees(rgb) for rgb in CLASS_COLOURS.values())
    assert np.allclose(np.diff(hues), 60, atol=1)  # well separated
    for name, rgb in NUISANCE_COLOURS.items():
        for gain in GAIN_RANGE:  # the gain scales RGB: saturation and hue stay
            jittered = np.rint(np.asarray(rgb) * gain)
            assert saturation(jittered) <= 0.4, name
            distances = [np.abs(jittered - c).max() for c in CLASS_COLOURS.values()]
            assert min(distances) > 90, name


@pytest.mark.parametrize("variant", ["single_6c", "double_12c"])
def test_mask_is_the_class_coloured_part_and_its_mean_colour_is_the_class(twin, variant):
    folder = twin / variant
    index = read_an8flower(folder)
    names = list(CLASS_COLOURS)
    for file, label in zip(index.files, index.labels.tolist(), strict=True):
        image, mask = load(folder, file)
        assert set(np.unique(mask).tolist()) == {0, 255}, file
        # only the discriminative part is saturated: the mask is exactly its pixels
        np.testing.assert_array_equal(mask == 255, saturation(image) > SATURATED, err_msg=file)
        mean = image[mask == 255].mean(0)
        nearest = min(
            names,
            key=lambda n: abs(
                (hue_degrees(CLASS_COLOURS[n]) - hue_degrees(mean) + 180) % 360 - 180
            ),
        )
        assert nearest == index.classes[label].colour, file
        assert np.ptp(image[mask == 255], axis=0).max() == 0  # one flat colour
    expected_parts = ["disc"] * 6 + (["leaves"] * 6 if variant == "double_12c" else [])
    assert [c.part for c in index.classes] == expected_parts
    assert [c.colour for c in index.classes] == (names * 2)[: len(expected_parts)]


@pytest.mark.parametrize("variant", ["single_6c", "double_12c"])
def test_files_are_the_rendered_parts_and_the_other_parts_are_nuisance(twin, variant):
    folder = twin / variant
    index = read_an8flower(folder)
    for i in range(0, len(index.files), 7):
        label = int(index.labels[i])
        part = index.classes[label].part
        image, masks, names = sample_flower(variant, label, int(Path(index.files[i]).stem), 3, 64)
        on_disk, mask = load(folder, index.files[i])
        np.testing.assert_array_equal(on_disk, image)
        np.testing.assert_array_equal(mask == 255, masks[part])
        for other in PARTS:
            if other != part:
                assert names[other] in NUISANCE_COLOURS, (other, names[other])
                assert (saturation(image[masks[other]]) <= 0.4).all()
        if variant == "double_12c":  # the other candidate part is there, nuisance-coloured
            other = "leaves" if part == "disc" else "disc"
            assert masks[other].sum() > 0


def test_mask_is_what_stays_visible_after_occlusion():
    # a leaf starting high on the stem and pointing steeply up reaches under the petals
    pose = Pose(leaf_bases=(0.0, 0.25), leaf_angles=(50.0, 30.0), leaf_lengths=(0.095, 0.08))
    colours = {"stem": (90, 90, 90), "leaves": (36, 242, 36), "petals": (236, 236, 230)}
    colours["disc"] = (242, 36, 36)
    image, masks = render(pose, colours)
    alone, alone_masks = render(pose, {**colours, "petals": None, "disc": None})
    hidden = alone_masks["leaves"] & (masks["petals"] | masks["disc"])
    assert (alone_masks["leaves"] & masks["petals"]).sum() > 0  # petals are drawn over the leaf
    np.testing.assert_array_equal(masks["leaves"], alone_masks["leaves"] & ~hidden)
    # visible masks partition the flower; each is exactly the pixels of its colour
    stacked = np.stack([masks[p] for p in PARTS])
    assert stacked.sum(0).max() == 1
    for part in PARTS:
        np.testing.assert_array_equal(masks[part], (image == colours[part]).all(-1))
    # the disc is front-most: drawing without the petals leaves it unchanged
    np.testing.assert_array_equal(alone_masks["disc"], np.zeros_like(masks["disc"]))
    _, no_petals = render(pose, {**colours, "petals": None})
    np.testing.assert_array_equal(no_petals["disc"], masks["disc"])


def test_same_flower_with_the_hue_on_the_leaves_or_on_the_disc():
    pose = Pose(angle=10.0, scale=1.1)
    hue = CLASS_COLOURS["blue"]
    base = {"stem": (96, 96, 100), "petals": (214, 198, 166)}
    on_disc, disc_masks = render(pose, {**base, "disc": hue, "leaves": (128, 128, 92)})
    on_leaves, leaf_masks = render(pose, {**base, "disc": (128, 128, 92), "leaves": hue})
    for part in PARTS:  # same geometry, only the colours moved
        np.testing.assert_array_equal(disc_masks[part], leaf_masks[part])
    np.testing.assert_array_equal(saturation(on_disc) > SATURATED, disc_masks["disc"])
    np.testing.assert_array_equal(saturation(on_leaves) > SATURATED, leaf_masks["leaves"])


def test_classes_are_learnable_from_the_mask_colour_and_not_from_the_nuisance_parts(twin):
    index = read_an8flower(twin / "single_6c")
    labels = index.labels.numpy()
    inside, nuisance = [], []
    for i, file in enumerate(index.files):
        image, mask = load(index.root, file)
        inside.append(image[mask == 255].mean(0))
        _, masks, _ = sample_flower("single_6c", int(labels[i]), int(Path(file).stem), 3, 64)
        background = ~np.any([masks[p] for p in PARTS], axis=0)
        parts = [masks["petals"], masks["stem"], masks["leaves"], background]
        nuisance.append(np.concatenate([image[m].mean(0) for m in parts]))
    held = index.folds.numpy() == 0  # the fold protocol: train on folds 1-4, test on fold 0
    classifier = KNeighborsClassifier(3).fit(np.array(inside)[~held], labels[~held])
    assert classifier.score(np.array(inside)[held], labels[held]) == 1.0
    chance = 1 / 6
    leak = cross_val_score(KNeighborsClassifier(3), np.array(nuisance), labels, cv=5).mean()
    assert leak < chance + 0.2, leak


def test_double_12c_needs_both_candidate_parts(twin):
    """Disc and leaf colour together give the 12 classes; the leaf colour alone does not."""
    index = read_an8flower(twin / "double_12c")
    labels = index.labels.numpy()
    features = []
    for i, file in enumerate(index.files):
        image, masks, _ = sample_flower("double_12c", int(labels[i]), int(Path(file).stem), 3, 64)
        features.append(np.concatenate([image[masks[p]].mean(0) for p in ("disc", "leaves")]))
    features = np.array(features)
    both = cross_val_score(KNeighborsClassifier(3), features, labels, cv=5).mean()
    leaves_only = cross_val_score(KNeighborsClassifier(3), features[:, 3:], labels, cv=5).mean()
    assert both == 1.0
    assert leaves_only < 0.7  # the disc classes are not told apart by their nuisance leaves


def test_folds_are_stratified(twin):
    for variant in ("single_6c", "double_12c"):
        index = read_an8flower(twin / variant)
        for cls in range(len(index.classes)):
            counts = torch.bincount(index.folds[index.labels == cls], minlength=5)
            assert counts.tolist() == [PER_CLASS // 5] * 5
    folds = stratified_folds(12, 7, np.random.default_rng(0))
    for row in folds:
        counts = np.bincount(row, minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.ptp(np.bincount(folds.ravel(), minlength=5)) <= 1  # remainders spread


def test_same_seed_same_bytes(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        make_an8flower(tmp_path / name, "double_12c", per_class=5, size=32, seed=seed)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 12 * 5 * 2 + 3
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    image = Path("double_12c/images/00/00000.png")
    assert (tmp_path / "a" / image).read_bytes() != (tmp_path / "c" / image).read_bytes()


@pytest.fixture
def copy(twin, tmp_path) -> Path:
    folder = tmp_path / "single_6c"
    shutil.copytree(twin / "single_6c", folder)
    return folder


def rewrite(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("file", "line", "text", "reason"),
    [
        ("folds.csv", 3, "images/00/00001.png,7", "fold 7 is outside 0..4"),
        ("folds.csv", 4, "images/00/00002.png,x", "fold 'x' is not an integer"),
        (
            "folds.csv",
            5,
            "images/09/00003.png,1",
            "images/09/00003.png is in class folder 09, which classes.csv does not list",
        ),
        (
            "folds.csv",
            6,
            "images/00/00001.png,1",
            "file images/00/00001.png repeats (first at line 3)",
        ),
        ("folds.csv", 1, "file,split", "header must be file,fold"),
        ("folds.csv", 2, "00/00000.png,0", "file '00/00000.png' is not images/<class>/<name>.png"),
        (
            "classes.csv",
            3,
            "1,disc,yellow,300,242,36",
            "colour (300, 242, 36) has a value outside 0-255",
        ),
        ("classes.csv", 4, "1,disc,green,36,242,36", "class 1 repeats (first at line 3)"),
        ("classes.csv", 5, "3,disc,cyan,36,242", "expected 6 fields, got 5"),
    ],
)
def test_reader_errors_name_file_and_line(copy, file, line, text, reason):
    rewrite(copy / file, line, text)
    with pytest.raises(FormatError) as error:
        read_an8flower(copy)
    assert str(error.value).startswith(f"{copy / file}:{line}: {reason}")


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_reader_names_the_line_listing_a_missing_file(copy, folder):
    (copy / folder / "00" / "00002.png").unlink()
    with pytest.raises(
        FormatError, match=r"folds\.csv:4: lists .*00002\.png but it does not exist"
    ):
        read_an8flower(copy)


def test_mask_size_and_values_are_checked_when_read(copy):
    index = read_an8flower(copy)
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(index.mask_path(0))
    with pytest.raises(
        FormatError, match=r"mask is \(32, 64\) \(H, W\) but its image .* is \(64, 64\)"
    ) as error:
        read_pair(index, 0)
    assert error.value.path == index.mask_path(0)
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(index.mask_path(1))
    with pytest.raises(FormatError, match="values other than 0 and 255"):
        read_pair(index, 1)
    image, mask = read_pair(index, 2)
    assert image.shape == (3, 64, 64) and mask.dtype == torch.bool


@pytest.mark.parametrize("variant", ["single_6c", "double_12c"])
def test_fold_splits_are_disjoint_and_cover_everything(twin, variant):
    everything = set(read_an8flower(twin / variant).files)
    held_out = []
    for fold in range(5):
        dm = An8FlowerDataModule(str(twin), variant, fold=fold, num_workers=0)
        dm.setup("fit")
        train = {dm.index.files[r] for r in dm.splits["train"].rows}
        test = {dm.index.files[r] for r in dm.splits["test"].rows}
        assert dm.splits["val"].rows == dm.splits["test"].rows
        assert not train & test and train | test == everything
        assert (dm.index.folds[dm.splits["test"].rows] == fold).all()
        held_out.append(test)
    assert set().union(*held_out) == everything
    assert sum(len(h) for h in held_out) == len(everything)


def test_batches(twin):
    dm = An8FlowerDataModule(str(twin), "double_12c", fold=2, batch_size=8, num_workers=0)
    dm.setup("fit")
    assert dm.num_classes == 12 and dm.class_table[7].part == "leaves"
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "mask", "image_id"}
    assert batch["image"].shape == (8, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert batch["mask"].shape == (8, 1, 64, 64) and batch["mask"].dtype == torch.float32
    assert set(batch["mask"].unique().tolist()) == {0.0, 1.0}
    assert batch["label"].dtype == torch.long
    # the mask marks the saturated, class-coloured pixels of the image it comes with
    saturated = torch.from_numpy(saturation(batch["image"].permute(0, 2, 3, 1).numpy()) > SATURATED)
    assert torch.equal(saturated, batch["mask"][:, 0].bool())
    small = An8FlowerDataModule(str(twin), "single_6c", batch_size=4, num_workers=0, image_size=32)
    small.setup("test")
    batch = next(iter(small.test_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}


def test_synthetic_twin_is_written_when_missing(tmp_path):
    root = tmp_path / "flowers"
    with pytest.raises(DatasetNotFoundError, match="make data DATASET=synthetic-an8flower OUT="):
        An8FlowerDataModule(str(root), num_workers=0).setup("fit")
    dm = An8FlowerDataModule(str(root), "single_6c", synthetic="tiny", num_workers=0)
    dm.prepare_data()
    stamp = (root / "single_6c" / "folds.csv").stat().st_mtime_ns
    dm.prepare_data()  # up to date: not rewritten
    assert (root / "single_6c" / "folds.csv").stat().st_mtime_ns == stamp
    dm.setup("fit")
    assert len(dm.splits["train"]) + len(dm.splits["test"]) == 6 * 10


def test_make_data_command(tmp_path):
    out = tmp_path / "out"
    prepare_main(["synthetic-an8flower", "--out", str(out), "--per-class", "5", "--size", "32"])
    for variant, classes in (("single_6c", 6), ("double_12c", 12)):
        with open(out / variant / "folds.csv") as handle:
            rows = list(csv.reader(handle))[1:]
        assert len(rows) == classes * 5
        assert Image.open(out / variant / rows[0][0]).size == (32, 32)
    prepare_main(
        [
            "synthetic-an8flower",
            "--out",
            str(tmp_path / "one"),
            "--variant",
            "single_6c",
            "--per-class",
            "5",
        ]
    )
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["single_6c"]
    summary = twins_main(["an8flower", "--out", str(tmp_path / "two"), "--per-class", "5"])
    assert summary["images"] == 30 and (tmp_path / "two" / "single_6c" / "folds.csv").is_file()


def test_part_masks_are_the_visible_disc_and_leaves_of_each_held_out_image(twin):
    dm = An8FlowerDataModule(str(twin), "double_12c", fold=1, batch_size=24, part_masks=True)
    dm.hparams.num_workers = 0
    dm.setup("fit")
    assert dm.candidate_parts == ("disc", "leaves")
    assert "part_masks" not in next(iter(dm.train_dataloader()))  # only the evaluation needs them
    batch = next(iter(dm.test_dataloader()))
    parts = batch["part_masks"]
    assert parts.shape == (24, 2, 64, 64) and set(parts.unique().tolist()) == {0.0, 1.0}
    pixels = batch["image"].permute(0, 2, 3, 1).numpy()
    for i, label in enumerate(batch["label"].tolist()):
        own, other = (0, 1) if label < 6 else (1, 0)
        assert torch.equal(parts[i, own], batch["mask"][i, 0])
        # the other candidate part: one flat nuisance colour, on pixels the mask does not hold
        colours = np.unique(pixels[i][parts[i, other].bool().numpy()], axis=0)
        assert len(colours) == 1 and saturation(colours[0]) < SATURATED
        assert not (parts[i, 0].bool() & parts[i, 1].bool()).any()
    small = An8FlowerDataModule(
        str(twin), "double_12c", batch_size=4, num_workers=0, image_size=32, part_masks=True
    )
    small.setup("test")
    batch = next(iter(small.test_dataloader()))
    assert batch["part_masks"].shape == (4, 2, 32, 32)
    own = torch.where(batch["label"] < 6, 0, 1)
    assert torch.equal(batch["part_masks"][torch.arange(4), own], batch["mask"][:, 0])


def test_part_masks_need_the_manifest_of_this_renderer(twin, tmp_path):
    folder = tmp_path / "double_12c"
    shutil.copytree(twin / "double_12c", folder)
    dm = An8FlowerDataModule(str(tmp_path), "double_12c", num_workers=0, part_masks=True)
    manifest = folder / "an8flower.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"renderer_sha256": "', '"renderer_sha256": "0'))
    with pytest.raises(FormatError, match="another version of datamodules/synthetic/an8flower"):
        dm.setup("test")
    manifest.unlink()
    with pytest.raises(FormatError, match="an8flower.json: missing: part masks are re-rendered"):
        dm.setup("test")
    An8FlowerDataModule(str(tmp_path), "double_12c", num_workers=0).setup("test")  # not asked


def test_part_masks_refuse_a_stored_mask_the_renderer_did_not_draw(twin, tmp_path):
    folder = tmp_path / "double_12c"
    shutil.copytree(twin / "double_12c", folder)
    dm = An8FlowerDataModule(str(tmp_path), "double_12c", fold=0, num_workers=0, part_masks=True)
    dm.setup("test")
    test = dm.splits["test"]
    path = dm.index.mask_path(test.rows[0])
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0] = 255 - mask[0, 0]  # one pixel off
    Image.fromarray(mask).save(path)
    with pytest.raises(FormatError, match="differs from the .* the twin's manifest re-renders"):
        test[0]
    assert "part_masks" in test[1]
