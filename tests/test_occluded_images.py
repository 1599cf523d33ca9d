"""OccludedImages (occlusion augmentation of OLR's teacher) and OLRDataModule(train_occlusion)."""

from __future__ import annotations

import pytest
import torch
from test_occlusion_pairs import SIDE, Tagged

from datamodules.occluded_images import OccludedImages


def test_rate_zero_keeps_every_item_and_rate_one_occludes_every_image():
    base = Tagged()
    clean, full = OccludedImages(base, 0.0), OccludedImages(base, 1.0, min_fraction=0.4)
    for i in range(len(base)):
        assert torch.equal(clean[i]["image"], base[i]["image"]) and not clean[i]["occluded"]
        item = full[(2, i)]
        top, left, h, w = item["box"].tolist()
        assert item["occluded"] and 8 <= h <= SIDE * 0.66 + 1 and 8 <= w <= SIDE * 0.66 + 1
        window = item["image"][:, top : top + h, left : left + w]
        assert (window == 0).all()
        outside = item["image"].clone()
        outside[:, top : top + h, left : left + w] = base[i]["image"][0, 0, 0]
        assert torch.equal(outside, base[i]["image"])  # only the rectangle changed
        assert torch.equal(item["attributes"], base[i]["attributes"])
        assert item["image_id"] == base[i]["image_id"]


def test_items_are_pure_functions_of_the_key_and_the_rate_is_the_share():
    data = OccludedImages(Tagged(), 0.5, seed=3)
    assert all(torch.equal(data[(1, i)]["image"], data[(1, i)]["image"]) for i in range(10))
    draws = [bool(data[(e, i)]["occluded"]) for e in range(20) for i in range(len(data))]
    assert 0.42 < sum(draws) / len(draws) < 0.58  # 800 draws: 0.5 +- 2.8 sigma
    boxes = {tuple(data[(e, 0)]["box"].tolist()) for e in range(20)}
    assert len(boxes) > 5  # drawn afresh each epoch


def test_bad_rate_refused():
    with pytest.raises(ValueError, match="occlusion rate must be in"):
        OccludedImages(Tagged(), 1.5)


def test_datamodule_occludes_training_images_only(synthetic_faces_root):
    from datamodules.olr import OLRDataModule
    from datamodules.pairs import EpochSampler

    dm = OLRDataModule(
        root=str(synthetic_faces_root / "celeba"), image_size=46, train_count=300,
        train_occlusion=1.0, batch_size=16, num_workers=0,
    )  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler)
    batch = next(iter(loader))
    assert batch["occluded"].all() and batch["image"].shape == (16, 3, 46, 46)
    clean = next(iter(dm.val_dataloader()))
    assert "occluded" not in clean  # evaluation images stay clean
    with pytest.raises(ValueError, match="train_occlusion is for clean-image training"):
        OLRDataModule(pairs=True, train_occlusion=0.5)
    with pytest.raises(ValueError, match="train_occlusion must be in"):
        OLRDataModule(train_occlusion=-0.1)
