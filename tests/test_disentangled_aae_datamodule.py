"""DisentangledAAEDataModule and PosedFaces on the tiny synthetic twin: the crop in [-1, 1], poses
fitted from the landmarks, mirrored images carry mirrored poses, official identity-disjoint splits,
luminance equalisation, and clear errors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.disentangled_aae import DisentangledAAEDataModule
from datamodules.formats.celeba import read_celeba
from datamodules.head_pose import pose_from_landmarks
from datamodules.images import read_rgb
from datamodules.posed_faces import equalize_luminance


def _module(root, **kwargs) -> DisentangledAAEDataModule:
    args = {"image_size": 32, "hist_eq": False, "batch_size": 8, "num_workers": 0} | kwargs
    dm = DisentangledAAEDataModule(root=str(root / "celeba"), **args)
    dm.setup("fit")
    return dm


def test_items_are_the_face_crop_in_signed_range_with_fitted_poses(synthetic_faces_root):
    dm = _module(synthetic_faces_root, flip_probability=0.0)
    item = dm.splits["train"][0]
    assert item["image"].shape == (3, 32, 32)
    assert -1.0 <= item["image"].min() < 0 < item["image"].max() <= 1.0
    index = read_celeba(synthetic_faces_root / "celeba", landmarks=True)
    row = index.names.index(item["image_id"])
    expected = pose_from_landmarks(index.landmarks[row : row + 1])[0]
    torch.testing.assert_close(item["pose"], expected.float())
    # the crop: (x=25, y=45) 128 x 128 of the 178 x 218 image, resized to 32
    raw = read_rgb(index.image_dir / item["image_id"])[:, 45:173, 25:153]
    small = torch.nn.functional.interpolate(raw[None].float() / 255, size=32, mode="bilinear",
                                            antialias=True, align_corners=False)[0]  # fmt: skip
    assert (item["image"] - (small * 2 - 1)).abs().mean() < 0.02
    assert (dm.image_mean, dm.image_std) == ((0.5,) * 3, (0.5,) * 3)
    assert dm.image_size == 32


def test_fitted_yaw_follows_the_twin_truth(synthetic_faces_root):
    dm = _module(synthetic_faces_root, flip_probability=0.0)
    with open(synthetic_faces_root / "celeba" / "synthetic_factors.csv") as f:
        truth = {r["image_id"]: float(r["yaw"]) for r in csv.DictReader(f)}
    test = dm.splits["test"]
    fitted = np.degrees(test.poses[:, 0].numpy())
    true = np.array([truth[n] for n in test.names])
    assert np.corrcoef(fitted, true)[0, 1] > 0.98


def test_mirrored_items_carry_the_mirrored_pose(synthetic_faces_root):
    plain = _module(synthetic_faces_root, flip_probability=0.0).splits["train"]
    mirrored = _module(synthetic_faces_root, flip_probability=1.0).splits["train"]
    a, b = plain[3], mirrored[3]
    assert not a["flipped"] and b["flipped"]
    torch.testing.assert_close(b["image"], a["image"].flip(-1))
    torch.testing.assert_close(b["pose"], a["pose"] * torch.tensor([-1.0, 1.0, -1.0]))
    torch.manual_seed(0)
    half = _module(synthetic_faces_root, flip_probability=0.5).splits["train"]
    share = sum(half[i]["flipped"] for i in range(len(half))) / len(half)
    assert 0.35 < share < 0.65


def test_only_training_images_are_mirrored(synthetic_faces_root):
    dm = _module(synthetic_faces_root, flip_probability=1.0)
    assert not any(dm.splits[s][i]["flipped"] for s in ("val", "test") for i in range(4))


def test_splits_are_the_official_identity_disjoint_partition(synthetic_faces_root):
    dm = _module(synthetic_faces_root)
    ids = {s: set(dm.splits[s].identities.tolist()) for s in ("train", "val", "test")}
    assert ids["train"].isdisjoint(ids["test"]) and ids["train"].isdisjoint(ids["val"])
    index = read_celeba(synthetic_faces_root / "celeba")
    assert sum(len(dm.splits[s]) for s in ids) == len(index.names)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["pose"].shape == (8, 3)
    assert batch["identity"].dtype == torch.long and batch["attributes"].shape == (8, 40)


def test_equalize_luminance_flattens_the_histogram_and_keeps_chroma():
    g = torch.Generator().manual_seed(0)
    dark = (torch.rand(3, 40, 40, generator=g) * 60 + 20).to(torch.uint8)  # values 20-80
    out = equalize_luminance(dark)
    assert out.dtype == torch.uint8 and out.shape == dark.shape
    y = np.asarray(Image.fromarray(out.permute(1, 2, 0).numpy()).convert("L"), dtype=float)
    assert y.max() - y.min() > 200  # stretched to about the full range
    # chroma kept: the YCbCr chroma of input and output agree to rounding
    cb_in = np.asarray(Image.fromarray(dark.permute(1, 2, 0).numpy()).convert("YCbCr"))[..., 1:]
    cb_out = np.asarray(Image.fromarray(out.permute(1, 2, 0).numpy()).convert("YCbCr"))[..., 1:]
    assert np.abs(cb_in.astype(int) - cb_out.astype(int)).mean() < 3
    with pytest.raises(ValueError, match="uint8"):
        equalize_luminance(dark.float())


def test_hist_eq_changes_the_images(synthetic_faces_root):
    plain = _module(synthetic_faces_root, flip_probability=0.0).splits["test"][0]["image"]
    equal = _module(synthetic_faces_root, flip_probability=0.0, hist_eq=True).splits["test"][0]
    assert not torch.allclose(plain, equal["image"])
    assert math.isclose(equal["image"].max().item(), 1.0, abs_tol=0.1)


def test_bad_settings_and_missing_landmarks_are_refused(synthetic_faces_root, tmp_path):
    with pytest.raises(ValueError, match="flip_probability"):
        DisentangledAAEDataModule(root="x", flip_probability=1.5)
    with pytest.raises(ValueError, match="crop"):
        DisentangledAAEDataModule(root="x", crop="face64")
    import shutil

    copy = tmp_path / "celeba"
    shutil.copytree(synthetic_faces_root / "celeba", copy)
    (copy / "list_landmarks_align_celeba.txt").unlink()
    dm = DisentangledAAEDataModule(root=str(copy), num_workers=0)
    with pytest.raises(Exception, match="list_landmarks_align_celeba.txt"):
        dm.setup("fit")


def _stage_b(root, style_source: str, **kwargs) -> DisentangledAAEDataModule:
    args = {
        "image_size": 32,
        "hist_eq": False,
        "batch_size": 8,
        "num_workers": 0,
        "stage": "disentangle",
        "identities_per_batch": 4,
        "images_per_identity": 4,
        "persons_per_batch": 2,
        "clips_per_person": 2,
        "frames_per_clip": 4,
        "style_source": style_source,
        "rounds_per_epoch": 2,
    } | kwargs
    dm = DisentangledAAEDataModule(root=str(root / "celeba"), **args)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("style_source", ["pseudo_clips", "clip_tree"])
def test_stage_b_serves_the_three_label_sources_in_turn(synthetic_faces_root, style_source):
    dm = _stage_b(synthetic_faces_root, style_source)
    batches = list(dm.train_dataloader())
    assert [b["source"][0] for b in batches] == ["identity", "expression", "style"] * 2
    assert all(len(set(b["source"])) == 1 and b["image"].shape == (16, 3, 32, 32) for b in batches)
    identity, expression, style = batches[:3]
    ids = identity["identity"].view(4, 4)  # 4 persons x 4 images, person by person
    assert (ids == ids[:, :1]).all() and len(set(ids[:, 0].tolist())) == 4
    assert expression["expression"].shape == (16,)
    assert expression["valence_arousal"].shape == (16, 2)
    smiling = expression["attributes"][:, dm.index.attribute_names.index("Smiling")]
    assert torch.equal(expression["valence_arousal"][:, 0] == 0.8, smiling == 1)
    persons = style["identity"].view(2, 8)
    clips = style["clip"].view(2, 2, 4)
    assert (persons == persons[:, :1]).all() and persons[0, 0] != persons[1, 0]
    assert (clips == clips[..., :1]).all() and (clips[:, 0, 0] != clips[:, 1, 0]).all()
    assert all(b["pose"].shape == (16, 3) for b in batches)
    assert dm.stage == "disentangle"


def test_stage_b_needs_equal_source_batches(synthetic_faces_root):
    with pytest.raises(ValueError, match="must agree"):
        DisentangledAAEDataModule(root="x", stage="joint", identities_per_batch=4)
