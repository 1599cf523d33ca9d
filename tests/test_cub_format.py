"""CUB-200-2011 and wsolevaluation metadata: readers, writers, conversion, errors, twin, data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.wsol.boxes import box_iou
from datamodules.cub import CUBDataModule
from datamodules.formats.cub import (
    CUBTable,
    check_cub_images,
    cub_to_wsol_metadata,
    read_cub,
    read_wsol_metadata,
    resize_box,
    write_cub,
    wsol_to_cub,
)
from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.images import NORMALIZATIONS, RandomIntensity
from datamodules.prepare import main as prepare
from datamodules.synthetic.birds import make_synthetic_cub


def _fixture(root, sizes=((500, 335), (300, 200), (200, 300))):
    """Three images in two classes; image 1 carries the real CUB line `1 60.0 27.0 325.0 304.0`."""
    names = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross"}
    paths = {1: f"{names[1]}/a.jpg", 2: f"{names[1]}/b.jpg", 3: f"{names[2]}/c.jpg"}
    boxes = {
        1: (60.0, 27.0, 325.0, 304.0),
        2: (10.5, 20.0, 290.0, 180.0),
        3: (0.0, 0.0, 200.0, 300.0),
    }
    table = CUBTable(
        [1, 2, 3], paths, {1: 1, 2: 1, 3: 2}, {1: False, 2: True, 3: False}, boxes, names
    )
    write_cub(root, table)
    for key, size in zip((1, 2, 3), sizes, strict=True):
        (root / "images" / paths[key]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(root / "images" / paths[key])
    return table


def test_conversion_golden_and_round_trip(tmp_path):
    cub = tmp_path / "CUB_200_2011"
    table = _fixture(cub)
    splits = cub_to_wsol_metadata(cub, tmp_path / "metadata")
    test = read_wsol_metadata(tmp_path / "metadata" / "test")
    assert test.boxes["001.Black_footed_Albatross/a.jpg"] == [(60, 27, 385, 331)]
    assert test.labels["002.Laysan_Albatross/c.jpg"] == 1  # 0-based
    assert test.boxes["002.Laysan_Albatross/c.jpg"] == [(0, 0, 199, 299)]  # x1, y1 clipped
    assert read_wsol_metadata(tmp_path / "metadata" / "train").boxes == splits["train"].boxes
    wsol_to_cub(tmp_path / "metadata", tmp_path / "back", table.class_names)
    again = read_cub(tmp_path / "back")
    assert sorted(again.paths.values()) == sorted(table.paths.values())
    for key, path in again.paths.items():
        original = next(k for k, p in table.paths.items() if p == path)
        assert again.labels[key] == table.labels[original]
        assert again.is_train[key] == table.is_train[original]


def test_resize_box_golden():
    assert resize_box((1, 2, 4, 3), (10, 20), (35, 10)) == (3, 1, 14, 1)


def test_resize_box_multiplies_before_dividing():
    """[WSOL] scales ``x * 224 / w``; ``x * (224 / w)`` is 1 px smaller on some CUB-sized boxes."""
    differ = [
        (x, w) for w in range(100, 520) for x in range(w) if int(x * (224 / w)) != int(x * 224 / w)
    ]
    assert (55, 110) in differ  # 55 * (224 / 110) = 111.99999999999999
    for x, w in differ:
        expected = int(x * 224 / w)
        assert resize_box((x, x, x, x), (w, w), (224, 224)) == (expected,) * 4, (x, w)
    assert resize_box((55, 0, 109, 50), (110, 100), (224, 224)) == (112, 0, 221, 112)


def test_metadata_without_final_newline(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    (folder / "image_ids.txt").write_text("a/x.jpg\na/y.jpg")
    (folder / "class_labels.txt").write_text("a/x.jpg,0\na/y.jpg,3")
    (folder / "image_sizes.txt").write_text("a/x.jpg,10,20\na/y.jpg,30,40")
    (folder / "localization.txt").write_text("a/x.jpg,1,2,3,4\na/x.jpg,0,0,9,19\na/y.jpg,5,5,6,6")
    split = read_wsol_metadata(folder)
    assert split.labels == {"a/x.jpg": 0, "a/y.jpg": 3}
    assert split.boxes["a/x.jpg"] == [(1, 2, 3, 4), (0, 0, 9, 19)]


@pytest.mark.parametrize(
    ("file", "content", "match"),
    [
        ("image_class_labels.txt", "1 1\n2 1\n3 7\n", "unknown class id 7"),
        ("train_test_split.txt", "1 0\n2 1\n", "3: no row for image 3 .* truncated file"),
        ("bounding_boxes.txt", "1 60.0 27.0 325.0\n", "expected 5 fields"),
        ("bounding_boxes.txt", "1 60 27 325 304\n2 1 1 x 1\n3 0 0 1 1\n", "not a number"),
    ],
)
def test_bad_tables(tmp_path, file, content, match):
    _fixture(tmp_path)
    (tmp_path / file).write_text(content)
    with pytest.raises(FormatError, match=match) as error:
        read_cub(tmp_path)
    assert file in str(error.value)


def test_bad_images(tmp_path):
    table = _fixture(tmp_path, sizes=((300, 200), (300, 200), (200, 300)))
    with pytest.raises(FormatError, match=r"bounding_boxes.txt:1: image 1: box outside 300x200"):
        check_cub_images(tmp_path, table)
    (tmp_path / "images" / table.paths[1]).unlink()
    with pytest.raises(FormatError, match=r"images.txt:1: lists .*a.jpg but it does not exist"):
        check_cub_images(tmp_path, table)


def test_metadata_box_outside_image(tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    (folder / "image_ids.txt").write_text("a/x.jpg\n")
    (folder / "class_labels.txt").write_text("a/x.jpg,0\n")
    (folder / "image_sizes.txt").write_text("a/x.jpg,10,20\n")
    (folder / "localization.txt").write_text("a/x.jpg,1,2,10,4\n")
    with pytest.raises(FormatError, match="localization.txt:1: box"):
        read_wsol_metadata(folder)


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    root = tmp_path_factory.mktemp("birds")
    make_synthetic_cub(root, num_classes=20, per_class=(5, 2, 2), size_range=(72, 96), seed=0)
    return root


def test_synthetic_twin(birds):
    table = read_cub(birds / "CUB_200_2011")
    assert len(table.class_names) == 20 and len(table.ids) == 20 * 7
    sizes = check_cub_images(birds / "CUB_200_2011", table)
    for split in ("train", "val", "test"):
        meta = read_wsol_metadata(birds / "metadata" / "CUB" / split)
        folder = birds / ("CUBV2" if split == "val" else "CUB_200_2011")
        for path in meta.image_ids[:10]:
            mask = np.asarray(Image.open(folder / "masks" / path)) > 0
            ys, xs = np.nonzero(mask)
            assert meta.boxes[path] == [(xs.min(), ys.min(), xs.max(), ys.max())]  # tight box
            width, height = meta.sizes[path]
            assert xs.min() >= 1 and xs.max() <= width - 2 and ys.max() <= height - 2
    assert len(sizes) == len(table.ids)
    # deterministic
    again = make_synthetic_cub(
        birds.parent / "again", num_classes=20, per_class=(5, 2, 2), size_range=(72, 96)
    )
    path = table.paths[1]
    assert np.array_equal(
        np.asarray(Image.open(birds / "CUB_200_2011" / "images" / path)),
        np.asarray(Image.open(again / "CUB_200_2011" / "images" / path)),
    )


def test_prepare_writes_the_twin_the_datamodule_reads(tmp_path, capsys):
    out = tmp_path / "birds"
    argv = ["synthetic-birds", "--out", str(out), "--classes", "3", "--per-class", "4", "1", "2"]
    prepare([*argv, "--size", "64", "80", "--variant", "under_mid", "--seed", "5"])
    assert "3 classes, 12 train / 3 val / 6 test images" in capsys.readouterr().out
    sizes = check_cub_images(out / "CUB_200_2011", read_cub(out / "CUB_200_2011"))
    assert all(64 <= side <= 80 for size in sizes.values() for side in size)
    data = CUBDataModule(
        root=str(out), image_size=32, resize_size=36, classes_per_batch=3, samples_per_class=4
    )
    data.setup("fit")
    assert data.num_classes == 3
    reference = make_synthetic_cub(
        tmp_path / "ref", 3, (4, 1, 2), size_range=(64, 80), seed=5, variant="under_mid"
    )
    path = read_cub(out / "CUB_200_2011").paths[1]
    assert np.array_equal(
        np.asarray(Image.open(out / "CUB_200_2011" / "images" / path)),
        np.asarray(Image.open(reference / "CUB_200_2011" / "images" / path)),
    )


def test_datamodule(birds, tmp_path):
    data = CUBDataModule(
        root=str(birds),
        image_size=64,
        resize_size=72,
        classes_per_batch=4,
        samples_per_class=3,
        eval_batch_size=8,
        num_workers=0,
        with_masks=True,
    )
    data.setup("fit")
    assert data.num_classes == 20
    assert data.samples_per_class == 3 and data.image_mean == NORMALIZATIONS["imagenet"][0]
    assert data.image_std == NORMALIZATIONS["imagenet"][1]
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (12, 3, 64, 64) and "boxes" not in batch  # weak supervision
    assert (batch["label"].view(4, 3) == batch["label"].view(4, 3)[:, :1]).all()
    val = next(iter(data.val_dataloader()))
    assert val["boxes"].shape == (8, 1, 4) and val["mask"].shape == (8, 64, 64)
    assert val["boxes"].max() <= 63 and set(val["mask"].unique().tolist()) <= {0, 1}
    holdout = CUBDataModule(
        root=str(birds),
        image_size=64,
        val_split="train_holdout",
        holdout_per_class=1,
        num_workers=0,
    )
    holdout.setup("fit")
    assert len(holdout.splits["val"]) == 20 and len(holdout.splits["train"]) == 80
    assert not set(holdout.splits["val"].split.image_ids) & set(
        holdout.splits["train"].split.image_ids
    )
    with pytest.raises(DatasetNotFoundError, match="make data DATASET=cub"):
        CUBDataModule(root=str(tmp_path / "nothing")).setup("fit")
    assert torch.is_tensor(val["label"])


def test_random_intensity_scales_all_channels_by_one_factor():

    torch.manual_seed(0)
    image = torch.rand(3, 8, 8) * 0.5 + 0.25
    factors = []
    for _ in range(200):
        out = RandomIntensity(0.25, 1.0)(image)
        ratio = out / image
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-6)
        factors.append(ratio.flatten()[0].item())
    assert 0.25 <= min(factors) < 0.35 and 0.9 < max(factors) <= 1.0
    with pytest.raises(ValueError, match="intensity range"):
        RandomIntensity(0.5, 0.25)


def test_intensity_augmentation_in_training_only(birds):
    common = {"root": str(birds), "image_size": 32, "resize_size": 32, "num_workers": 0}
    plain, dark = CUBDataModule(**common), CUBDataModule(**common, intensity=(0.25, 0.25))
    plain.setup("fit"), dark.setup("fit")
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS["imagenet"])
    for split in ("train", "test"):
        torch.manual_seed(0)  # same crop and flip in both
        a = plain.splits[split][0]["image"] * std + mean
        torch.manual_seed(0)
        b = dark.splits[split][0]["image"] * std + mean
        expected = a * 0.25 if split == "train" else a
        torch.testing.assert_close(b, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="intensity range"):
        CUBDataModule(intensity=(1.0, 0.5))


def _whole_image_box_v2(root) -> float:
    """MaxBoxAccV2 (%) of the trivial localizer that boxes the whole image, on the test split."""
    meta = read_wsol_metadata(root / "metadata" / "CUB" / "test")
    ious = np.array(
        [
            box_iou([(0, 0, width - 1, height - 1)], meta.boxes[path]).max()
            for path in meta.image_ids
            for width, height in [meta.sizes[path]]
        ]
    )
    return 100 * float(np.mean([(ious >= delta).mean() for delta in (0.3, 0.5, 0.7)]))


@pytest.mark.parametrize(
    ("variant", "low", "high"), [("under_mid", 0, 20), ("under_xl_small_head", 50, 70)]
)
def test_whole_image_box_baseline(variant, low, high, tmp_path):
    # The MinMaxCAM learning twin (``under_mid``) must not reward a CAM that lights up everything:
    # on ``under_xl_small_head`` (its earlier twin) a whole-image box already scored about CAM's V2.
    make_synthetic_cub(
        tmp_path, num_classes=10, per_class=(0, 0, 10), size_range=(72, 96), variant=variant
    )
    assert low <= _whole_image_box_v2(tmp_path) <= high


def _prepared_root(tmp_path):
    """A CUB root (the three-image fixture) whose metadata `make data DATASET=cub` has written."""
    root = tmp_path / "cub"
    _fixture(root / "CUB_200_2011")
    prepare(["cub", "--root", str(root)])
    return root


def _cut_last_line(path):
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


@pytest.mark.parametrize(
    ("table", "edit", "match"),
    [
        ("image_class_labels.txt", _cut_last_line, r":3: no row for image 3 .*truncated file"),
        (
            "bounding_boxes.txt",
            lambda path: path.write_text(path.read_text().replace("3 0.0 0.0 200.0", "3 9 9 200")),
            r":3: image 3: box outside 200x300",
        ),
    ],
)
def test_make_data_reads_the_tables_when_metadata_exists(tmp_path, capsys, table, edit, match):
    root = _prepared_root(tmp_path)
    assert "what training reads) verified" in capsys.readouterr().out
    edit(root / "CUB_200_2011" / table)
    with pytest.raises(FormatError, match=match) as error:
        prepare(["cub", "--root", str(root)])
    assert str(error.value).startswith(str(root / "CUB_200_2011" / table))


def _empty_test_image(root):
    (root / "CUB_200_2011" / "images" / "002.Laysan_Albatross" / "c.jpg").write_bytes(b"")


@pytest.mark.parametrize(
    ("edit", "where", "match"),
    [
        (
            lambda root: _cut_last_line(root / "metadata/CUB/test/class_labels.txt"),
            "metadata/CUB/test/class_labels.txt:2",
            r"no row for 002.Laysan_Albatross/c.jpg \(line 2 of image_ids.txt\).*truncated",
        ),
        (
            lambda root: _cut_last_line(root / "metadata/CUB/test/localization.txt"),
            "metadata/CUB/test/localization.txt:2",
            r"no row for 002.Laysan_Albatross/c.jpg",
        ),
        (_empty_test_image, "metadata/CUB/test/image_ids.txt:2", r"c.jpg but it is empty"),
    ],
)
def test_make_data_and_setup_run_the_same_metadata_check(tmp_path, edit, where, match):
    """What training reads (metadata/) is checked by one function, from setup and make data."""
    root = _prepared_root(tmp_path)
    edit(root)
    data = CUBDataModule(root=str(root), val_split="train_holdout", num_workers=0)
    with pytest.raises(FormatError, match=match) as at_setup:
        data.setup("fit")
    with pytest.raises(FormatError) as at_make_data:
        prepare(["cub", "--root", str(root)])
    assert str(at_setup.value).startswith(f"{root / where}:")
    assert str(at_make_data.value) == str(at_setup.value)


def test_make_data_checks_metadata_against_the_tables(tmp_path):
    root = _prepared_root(tmp_path)
    sizes = root / "metadata/CUB/train/image_sizes.txt"
    sizes.write_text(sizes.read_text().replace(",300,200", ",320,200"))  # not the image's size
    with pytest.raises(
        FormatError, match=r"image_sizes.txt:1: .*b.jpg: \(320, 200\), but its size"
    ):
        prepare(["cub", "--root", str(root)])


def test_metadata_listing_a_folder_or_an_empty_line_is_refused(tmp_path):
    root = _prepared_root(tmp_path)
    test = root / "metadata/CUB/test"
    for path in test.iterdir():  # c.jpg becomes its folder, in every file of the split
        path.write_text(path.read_text().replace("Albatross/c.jpg", "Albatross"))
    data = CUBDataModule(root=str(root), val_split="train_holdout", num_workers=0)
    with pytest.raises(FormatError, match=r"image_ids.txt:2: lists .*Albatross but it is not a f"):
        data.setup("fit")
    ids = test / "image_ids.txt"
    ids.write_text(ids.read_text().replace("002.Laysan_Albatross", ""))
    with pytest.raises(FormatError, match=r"image_ids.txt:2: empty line"):
        data.setup("fit")
