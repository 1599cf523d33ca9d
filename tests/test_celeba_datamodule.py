"""CelebADataModule on a small self-made CelebA root (24 JPEGs written with the format writers).

Image ``i`` (0-based) is 178 x 218 with red = 20 + 8 i everywhere (so a batch tells which file it
came from), green = the row index and blue = the column index (so crops can be located).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from datamodules.celeba import CelebADataModule
from datamodules.formats import celeba as fmt
from datamodules.formats.errors import DatasetNotFoundError, FormatError, SettingError
from datamodules.prepare import main as prepare

N = 24
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


def write_celeba(root: Path, n: int = N, seed: int = 0) -> dict:
    """Write a complete CelebA root; returns what was written."""
    g = torch.Generator().manual_seed(seed)
    names = [fmt.image_name(i + 1) for i in range(n)]
    attributes = torch.randint(0, 2, (n, 40), generator=g, dtype=torch.uint8)
    identities = [i // 4 + 1 for i in range(n)]
    splits = [(0, 0, 0, 0, 1, 2)[i % 6] for i in range(n)]
    (root / fmt.IMAGE_DIR).mkdir(parents=True)
    rows, cols = np.mgrid[0:218, 0:178]
    for i, name in enumerate(names):
        pixels = np.stack([np.full_like(rows, 20 + 8 * i), rows, cols], axis=-1).astype(np.uint8)
        Image.fromarray(pixels).save(root / fmt.IMAGE_DIR / name, quality=100, subsampling=0)
    fmt.write_attribute_table(root / fmt.ATTR_FILE, names, attributes)
    fmt.write_partition(root / fmt.PARTITION_FILE, names, splits)
    fmt.write_identities(root / fmt.IDENTITY_FILE, names, identities)
    return {"names": names, "attributes": attributes, "identities": identities, "splits": splits}


@pytest.fixture(scope="module")
def celeba(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data") / "celeba"
    return root, write_celeba(root)


def make(root: Path, **kwargs) -> CelebADataModule:
    kwargs = {"image_size": 32, "batch_size": 8, "num_workers": 0, **kwargs}
    dm = CelebADataModule(root=str(root), **kwargs)
    dm.setup("fit")
    return dm


def file_index(image_id: str) -> int:
    return int(image_id.split(".")[0]) - 1


def test_random_split(celeba):
    root, _ = celeba
    dm = make(root, test_fraction=0.2, val_fraction=0.1, seed=3)
    parts = {s: dm.splits[s].names for s in ("train", "val", "test")}
    # 24 images: round(4.8) = 5 test; round(0.1 * 19) = 2 val; 17 train.
    assert [len(parts[s]) for s in ("train", "val", "test")] == [17, 2, 5]
    assert sorted(sum(parts.values(), [])) == [fmt.image_name(i + 1) for i in range(N)]
    assert (
        make(root, test_fraction=0.2, val_fraction=0.1, seed=3).splits["test"].names
        == parts["test"]
    )
    assert (
        make(root, test_fraction=0.2, val_fraction=0.1, seed=4).splits["test"].names
        != parts["test"]
    )
    # The test split does not depend on val_fraction (val is carved from the train part).
    assert (
        make(root, test_fraction=0.2, val_fraction=0.3, seed=3).splits["test"].names
        == parts["test"]
    )


def test_random_split_by_train_count(celeba):
    """``train_count`` keeps exactly that many images outside the test split (OLR's 190,000)."""
    root, _ = celeba
    dm = make(root, train_count=N - 3, val_fraction=0.0, seed=3)
    parts = {s: dm.splits[s].names for s in ("train", "val", "test")}
    assert len(parts["train"]) == N - 3 and len(parts["test"]) == 3
    assert parts["val"] == parts["test"]
    assert sorted(parts["train"] + parts["test"]) == [fmt.image_name(i + 1) for i in range(N)]
    # The same seeded order as the fraction split: 5 test images there contain these 3.
    by_fraction = make(root, test_fraction=5 / N, val_fraction=0.0, seed=3).splits["test"].names
    assert set(parts["test"]) < set(by_fraction)
    # val_fraction carves validation out of the train_count images.
    carved = make(root, train_count=N - 4, val_fraction=0.1, seed=3).splits
    assert [len(carved[s]) for s in ("train", "val", "test")] == [18, 2, 4]


@pytest.mark.parametrize("count", [N, N + 1])
def test_train_count_must_leave_a_test_image(celeba, count):
    with pytest.raises(SettingError, match=rf"train_count={count} but the dataset has only {N} "):
        make(celeba[0], train_count=count)
    with pytest.raises(SettingError, match=rf"--data.init_args.train_count={N - 1} or fewer"):
        make(celeba[0], train_count=count)
    with pytest.raises(ValueError, match="train_count must be at least 1, got 0"):
        CelebADataModule(train_count=0)


def test_no_val_serves_test_split(celeba):
    dm = make(celeba[0], val_fraction=0.0)
    assert dm.splits["val"].names == dm.splits["test"].names
    assert len(dm.splits["train"]) == N - round(0.2 * N)


def test_official_split(celeba):
    root, written = celeba
    dm = make(root, split="official")
    for split, code in (("train", 0), ("val", 1), ("test", 2)):
        expected = [
            n for n, s in zip(written["names"], written["splits"], strict=True) if s == code
        ]
        assert dm.splits[split].names == expected


def test_batches_carry_the_right_labels(celeba):
    root, written = celeba
    dm = make(root, normalize="none")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["attributes"].shape == (8, 40) and batch["attributes"].dtype == torch.float32
    assert batch["identity"].dtype == torch.long and len(batch["image_id"]) == 8
    for k, image_id in enumerate(batch["image_id"]):
        i = file_index(image_id)
        red = batch["image"][k, 0].mean().item() * 255
        assert abs(red - (20 + 8 * i)) < 2, (image_id, red)  # the pixels are that file's
        assert torch.equal(batch["attributes"][k], written["attributes"][i].float())
        assert batch["identity"][k].item() == written["identities"][i]


def test_imagenet_normalisation(celeba):
    root, _ = celeba
    plain = make(root, normalize="none").splits["test"][0]["image"]
    normed = make(root, normalize="imagenet").splits["test"][0]["image"]
    expected = (plain - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    assert torch.allclose(normed, expected, atol=1e-5)
    dm = CelebADataModule(root=str(root))
    assert dm.image_mean == (0.485, 0.456, 0.406) and dm.image_std == (0.229, 0.224, 0.225)


def test_signed_normalisation(celeba):
    root, _ = celeba
    plain = make(root, normalize="none").splits["test"][0]["image"]
    signed = make(root, normalize="signed").splits["test"][0]["image"]
    assert torch.allclose(signed, plain * 2 - 1, atol=1e-6)
    dm = CelebADataModule(root=str(root), normalize="signed")
    assert dm.image_mean == (0.5, 0.5, 0.5) and dm.image_std == (0.5, 0.5, 0.5)


def test_identity_grouped_training_batches(celeba):
    root, written = celeba
    dm = make(root, split="official", identities_per_batch=3, images_per_identity=2, seed=1)
    assert dm.identity_batch_shape == (3, 2)
    train = dm.splits["train"]
    batches = list(dm.train_dataloader())
    # the default length: the 16 training images over 3 x 2 per batch
    assert len(batches) == len(train) // 6 == 2
    for batch in batches:
        groups = batch["identity"].view(3, 2)
        assert (groups == groups[:, :1]).all() and len(groups[:, 0].unique()) == 3
        for name, identity in zip(batch["image_id"], batch["identity"].tolist(), strict=True):
            assert written["identities"][file_index(name)] == identity
            assert written["splits"][file_index(name)] == 0  # training images only
    assert next(iter(dm.val_dataloader()))["image"].shape[0] == min(8, len(dm.splits["val"]))


def test_shuffled_training_batches_by_default(celeba):
    dm = make(celeba[0])
    assert dm.identity_batch_shape is None
    assert next(iter(dm.train_dataloader()))["image"].shape[0] == 8
    with pytest.raises(ValueError, match="images_per_identity must be positive"):
        CelebADataModule(identities_per_batch=4, images_per_identity=0)


def test_attribute_selection(celeba):
    root, written = celeba
    dm = make(root, attributes=["Young", "Smiling", "Male", "Bald"], drop_attributes=["Bald"])
    assert dm.attribute_names == ["Male", "Smiling", "Young"] and dm.num_attributes == 3
    columns = [fmt.ATTRIBUTE_NAMES.index(n) for n in ("Male", "Smiling", "Young")]
    rows = [file_index(n) for n in dm.splits["train"].names]
    assert torch.equal(dm.train_attributes, written["attributes"][rows][:, columns])
    assert dm.train_attributes.dtype == torch.uint8
    assert dm.splits["val"][0]["attributes"].shape == (3,)
    assert CelebADataModule(drop_attributes=["Male"]).num_attributes == 39


def test_unknown_attribute_lists_valid_names():
    with pytest.raises(
        ValueError, match="unknown CelebA attribute.*'Smile'.*5_o_Clock_Shadow.*Young"
    ):
        CelebADataModule(attributes=["Smile"])
    with pytest.raises(ValueError, match="'Beard'"):
        CelebADataModule(drop_attributes=["Beard"])


def test_train_attributes_before_setup():
    with pytest.raises(RuntimeError, match="setup"):
        _ = CelebADataModule().train_attributes


@pytest.mark.parametrize(
    ("crop", "offset", "size", "top", "left"),
    [
        ("face128", (0, 0), 128, 45, 25),
        ("center", (0, 0), 178, 20, 0),
        ("face128", (3, -5), 128, 40, 28),
        ("ffhq", (0, 0), 156, 37, 10),
    ],
)
def test_crops(celeba, crop, offset, size, top, left):
    dm = make(celeba[0], crop=crop, crop_offset=offset, image_size=size, normalize="none")
    image = dm.splits["test"][0]["image"] * 255  # no resize: crop side == image_size
    assert image.shape == (3, size, size)
    rows = torch.arange(size, dtype=torch.float32)
    assert (image[1, :, size // 2] - (top + rows)).abs().max() < 3  # green = source row
    assert (image[2, size // 2, :] - (left + rows)).abs().max() < 3  # blue = source column


def test_ffhq_crop_follows_ffhq_alignment_rule():
    """FFHQ's quad (side 2 max(2|e2e|, 1.8|e2m|), centre eye_avg + 0.1 e2m) on CelebA landmarks."""
    from datamodules.celeba import CROP_BOXES

    eyes, mouth = np.array([[69, 111], [108, 111]]), np.array([[73, 152], [105, 152]])
    eye_avg, eye_to_mouth = eyes.mean(0), mouth.mean(0) - eyes.mean(0)
    side = 2 * max(2.0 * np.hypot(*(eyes[1] - eyes[0])), 1.8 * np.hypot(*eye_to_mouth))
    centre = eye_avg + 0.1 * eye_to_mouth
    top, left, height, width = CROP_BOXES["ffhq"]
    assert height == width == round(side)
    assert abs(left + width / 2 - centre[0]) <= 1 and abs(top + height / 2 - centre[1]) <= 1


def test_crop_outside_image_names_file(celeba):
    dm = make(celeba[0], crop="center", crop_offset=(5, 0))
    with pytest.raises(FormatError, match=r"000\d\d\d\.jpg: crop box 178x178 at \(x=5, y=20\)"):
        dm.splits["test"][0]
    with pytest.raises(ValueError, match="crop_offset"):
        CelebADataModule(crop_offset=(1, 0))


def test_identity_groups(celeba):
    dm = make(celeba[0], split="official")
    train = dm.splits["train"]
    assert train.identities.dtype == torch.long and len(train.identities) == len(train)
    for identity in train.identities.unique().tolist():
        positions = train.indices_of_identity(identity)
        assert positions and all(train.identities[p] == identity for p in positions)
        assert len(positions) == int((train.identities == identity).sum())
    assert train.indices_of_identity(999) == []


def test_randaugment_on_train_only(celeba):
    dm = make(celeba[0], randaugment=True, randaugment_ops=3, randaugment_magnitude=7)
    ops = [t for t in dm.splits["train"].transform.transforms if isinstance(t, v2.RandAugment)]
    assert len(ops) == 1 and ops[0].num_ops == 3 and ops[0].magnitude == 7
    for split in ("val", "test"):
        assert not any(isinstance(t, v2.RandAugment) for t in dm.splits[split].transform.transforms)
    torch.manual_seed(0)
    draws = torch.stack([dm.splits["train"][0]["image"] for _ in range(4)])
    assert draws.shape == (4, 3, 32, 32) and draws.std(0).max() > 0  # augmentations vary


def test_missing_image_names_file_and_table_line(tmp_path: Path):
    root = tmp_path / "celeba"
    write_celeba(root, n=8)
    (root / fmt.IMAGE_DIR / "000005.jpg").unlink()
    with pytest.raises(FormatError) as info:
        make(root)
    message = str(info.value)
    assert message.startswith(f"{root / fmt.ATTR_FILE}:7:")
    assert str(root / fmt.IMAGE_DIR / "000005.jpg") in message


def test_empty_image_is_refused_at_setup_naming_its_table_line(tmp_path: Path):
    root = tmp_path / "celeba"
    write_celeba(root, n=8)
    (root / fmt.IMAGE_DIR / "000006.jpg").write_bytes(b"")
    with pytest.raises(FormatError) as info:
        make(root)  # setup, before any batch
    message = str(info.value)
    assert message.startswith(f"{root / fmt.ATTR_FILE}:8:")
    assert f"{root / fmt.IMAGE_DIR / '000006.jpg'} but it is empty (0 bytes)" in message


def test_unreadable_image_names_file(tmp_path: Path):
    root = tmp_path / "celeba"
    write_celeba(root, n=8)
    bad = root / fmt.IMAGE_DIR / "000001.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated jpeg")
    dm = make(root, split="official")
    with pytest.raises(FormatError, match=f"^{bad}: cannot read image"):
        dm.splits["train"][0]


def test_missing_root(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError, match="mmlab.ie.cuhk.edu.hk"):
        make(tmp_path / "celeba")


def test_predict_is_test_split(celeba):
    dm = make(celeba[0])
    ids = [i for batch in dm.predict_dataloader() for i in batch["image_id"]]
    assert ids == dm.splits["test"].names


def test_synthetic_prepare_data_writes_twin_once(tmp_path: Path, monkeypatch, caplog):
    calls = []

    def fake_writer(out, preset, seed):
        calls.append((Path(out), preset, seed))
        write_celeba(Path(out) / "celeba", n=6)

    import datamodules.synthetic.faces as faces

    monkeypatch.setattr(faces, "write_synthetic_faces", fake_writer)
    dm = CelebADataModule(root=str(tmp_path / "celeba"), synthetic="tiny", seed=5, num_workers=0)
    dm.prepare_data()
    assert calls == [(tmp_path, "tiny", 5)]
    assert "SYNTHETIC DATA" in caplog.text
    dm.prepare_data()  # list_attr_celeba.txt exists now: nothing written
    assert len(calls) == 1
    dm.setup("fit")
    # 6 images: round(1.2) = 1 test; 5 % of the other 5 rounds to 0, but a requested val part
    # keeps at least one image.
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    with pytest.raises(ValueError, match="must end in 'celeba'"):
        CelebADataModule(root=str(tmp_path / "faces"), synthetic="tiny").prepare_data()


def test_prepare_cli_verifies_and_summarises(celeba, capsys):
    prepare(["celeba", "--root", str(celeba[0])])
    out = capsys.readouterr().out
    assert f"{N} images, all present and not empty" in out and "identities: 6" in out
    assert "train 16, val 4, test 4" in out and "Smiling" in out


def test_reads_the_synthetic_twin(synthetic_faces_root: Path):
    """The renderer's CelebA twin, read through the real code path, agrees with its sidecar."""
    import csv

    root = synthetic_faces_root / "celeba"
    with open(root / "synthetic_factors.csv", newline="") as f:
        truth = {row["image_id"]: row for row in csv.DictReader(f)}
    dm = make(root, split="official", normalize="none")
    seen = 0
    for split, code in (("train", "0"), ("val", "1"), ("test", "2")):
        data = dm.splits[split]
        for i, name in enumerate(data.names):
            assert truth[name]["split"] == code
            assert int(truth[name]["identity"]) == data.identities[i].item()
            expected = [int(truth[name][a]) for a in fmt.ATTRIBUTE_NAMES]
            assert data.attributes[i].tolist() == expected
        seen += len(data)
    assert seen == len(truth)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and 0 <= batch["image"].min()
    index = fmt.read_celeba(root, bboxes=True, landmarks=True)
    assert index.landmarks.shape == (len(truth), 10) and index.bboxes.shape == (len(truth), 4)


def test_prepare_cli_synthetic_faces(tmp_path: Path, monkeypatch, capsys):
    calls = []
    module = types.ModuleType("datamodules.synthetic.faces")
    module.write_synthetic_faces = lambda out, **kwargs: calls.append((Path(out), kwargs))
    monkeypatch.setitem(sys.modules, "datamodules.synthetic.faces", module)
    prepare(["synthetic-faces", "--out", str(tmp_path), "--preset", "tiny", "--seed", "3"])
    prepare(["synthetic-faces", "--out", str(tmp_path), "--ffhq-size", "64", "--workers", "2"])
    assert calls == [
        (tmp_path, {"preset": "tiny", "seed": 3}),
        (tmp_path, {"preset": "small", "seed": 0, "ffhq_size": 64, "workers": 2}),
    ]
    assert f"written to {tmp_path}/celeba" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        prepare(["imagenet"])


def test_random_split_sizes_match_the_paper():
    # Le & Lee: 202,599 images, random 20 % test = 40,520, train 162,079; 5 % of it for validation.
    n = 202_599
    index = fmt.CelebAIndex(
        root=Path("unused"),
        names=[fmt.image_name(i + 1) for i in range(n)],
        attribute_names=list(fmt.ATTRIBUTE_NAMES),
        attributes=torch.zeros(n, 40, dtype=torch.uint8),
        partition=torch.zeros(n, dtype=torch.long),
        identity=torch.zeros(n, dtype=torch.long),
    )
    rows = CelebADataModule()._split_rows(index)
    assert [len(rows[s]) for s in ("train", "val", "test")] == [153_975, 8_104, 40_520]
    assert torch.cat(list(rows.values())).unique().numel() == n


def test_zoom_enlarges_the_centre_and_is_off_by_default():
    from datamodules.images import square_transform

    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    image[:, 24:40, 24:40] = 255  # a centred 16 x 16 square: 6.25 % of the pixels
    plain = square_transform(64, "none")(image)
    assert torch.equal(plain, image.float() / 255)
    torch.manual_seed(0)
    zoomed = torch.stack([square_transform(64, "none", zoom=0.5)(image) for _ in range(8)])
    white = (zoomed[:, 0] > 0.5).float().mean(dim=(1, 2))
    assert (white >= 0.0625 - 1e-3).all() and white.max() > 0.09  # up to 1.5^2 x larger
