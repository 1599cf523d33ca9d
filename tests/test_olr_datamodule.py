"""OLRDataModule on the tiny synthetic faces at 46 px: labels, crop, split by count, pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.celeba import CelebADataModule
from datamodules.formats.celeba import ATTRIBUTE_NAMES, read_celeba
from datamodules.formats.errors import SettingError
from datamodules.images import read_rgb, square_transform
from datamodules.olr import OLRDataModule
from datamodules.pairs import EpochSampler, OcclusionPairs

SIZE, HELD_OUT = 46, 30


@pytest.fixture(scope="module")
def root(synthetic_faces_root: Path) -> Path:
    return synthetic_faces_root / "celeba"


@pytest.fixture(scope="module")
def total(root: Path) -> int:
    return len(read_celeba(root).names)


def make(root: Path, total: int, **kwargs) -> OLRDataModule:
    kwargs = {"image_size": SIZE, "batch_size": 16, "num_workers": 0, **kwargs}
    dm = OLRDataModule(root=str(root), train_count=total - HELD_OUT, **kwargs)
    dm.setup("fit")
    return dm


def test_38_labels_in_official_order():
    dm = OLRDataModule()
    expected = [n for n in ATTRIBUTE_NAMES if n not in ("Wearing_Necklace", "Wearing_Necktie")]
    assert dm.attribute_names == expected and dm.num_attributes == 38
    assert dm.image_mean == (0.0, 0.0, 0.0) and dm.image_std == (1.0, 1.0, 1.0)


def test_split_by_count(root, total):
    dm = make(root, total)
    train, test = dm.splits["images_train"], dm.splits["images_test"]
    assert len(train) == total - HELD_OUT and len(test) == HELD_OUT
    assert not set(train.names) & set(test.names)
    assert dm.train_attributes.shape == (total - HELD_OUT, 38)
    # The same split as CelebADataModule's random split with that count and seed.
    faces = CelebADataModule(root=str(root), train_count=total - HELD_OUT, val_fraction=0.0)
    faces.setup("fit")
    assert test.names == faces.splits["test"].names


def test_train_count_larger_than_the_dataset(root, total):
    with pytest.raises(SettingError, match=rf"--data.init_args.train_count={total - 1} or fewer"):
        OLRDataModule(root=str(root), train_count=total + 5).setup("fit")


def test_clean_images_are_centre_crops_in_unit_range(root, total):
    dm = make(root, total)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 3, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert batch["attributes"].shape == (16, 38)
    assert set(batch["attributes"].unique().tolist()) <= {0.0, 1.0}
    item = dm.splits["test"][0]
    pixels = read_rgb(root / "img_align_celeba" / item["image_id"])[:, 20:198, :]
    assert torch.equal(item["image"], square_transform(SIZE, "none")(pixels))
    val = [b["image_id"] for b in dm.val_dataloader()]
    assert sum(val, []) == dm.splits["images_test"].names  # validation serves the test split


def test_predict_serves_clean_train_then_test(root, total):
    dm = make(root, total, pairs=True)
    loaders = dm.predict_dataloader()
    assert [len(loader.dataset) for loader in loaders] == [total - HELD_OUT, HELD_OUT]
    ids = sum((b["image_id"] for b in loaders[1]), [])
    assert ids == dm.splits["images_test"].names and "image" in next(iter(loaders[0]))
    only = make(root, total, predict_splits=["test"]).predict_dataloader()
    assert len(only) == 1 and len(only[0].dataset) == HELD_OUT
    with pytest.raises(ValueError, match="predict_splits takes 'train' and 'test'"):
        OLRDataModule(predict_splits=["val"])


def check_pair_batch(batch: dict, size: int) -> None:
    for side in ("a", "b"):
        images, boxes = batch[f"image_{side}"], batch[f"box_{side}"]
        assert images.shape[1:] == (3, size, size) and 0 <= images.min() and images.max() <= 1
        assert batch[f"attributes_{side}"].shape[1:] == (38,)
        top, left, h, w = boxes.unbind(1)
        assert (h >= 0.33 * size).all() and (h <= 0.66 * size).all()
        assert (w >= 0.33 * size).all() and (w <= 0.66 * size).all()
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + h <= size).all() and (left + w <= size).all()
        for k in range(len(images)):
            t, x, hh, ww = boxes[k].tolist()
            assert (images[k, :, t : t + hh, x : x + ww] == 0).all()


def pair_keys(loader, epoch: int) -> list[tuple]:
    loader.sampler.set_epoch(epoch)
    keys = []
    for batch in loader:
        check_pair_batch(batch, SIZE)
        keys += zip(
            batch["index_a"].tolist(),
            batch["index_b"].tolist(),
            map(tuple, batch["box_a"].tolist()),
            map(tuple, batch["box_b"].tolist()),
            batch["epoch"].tolist(),
            strict=True,
        )
    return keys


def test_training_pairs(root, total):
    dm = make(root, total, pairs=True)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler) and isinstance(
        dm.splits["train"], OcclusionPairs
    )
    first = pair_keys(loader, 0)
    assert sorted(k[0] for k in first) == list(range(total - HELD_OUT))  # every image, once
    assert {k[4] for k in first} == {0}
    again = make(root, total, pairs=True, num_workers=2).train_dataloader()
    assert pair_keys(again, 0) == first  # deterministic, with or without workers
    second = pair_keys(again, 1)
    assert sorted(k[:2] for k in second) != sorted(k[:2] for k in first)  # new partners
    labels = dm.splits["images_train"].attributes
    batch = next(iter(loader))
    assert torch.equal(batch["attributes_b"], labels[batch["index_b"]].float())


def test_fixed_held_out_pairs(root, total):
    dm = make(root, total, pairs=True)
    assert dm.splits["val"] is dm.splits["test"]

    def held_out() -> list[tuple]:
        rows = []
        for batch in dm.val_dataloader():
            check_pair_batch(batch, SIZE)
            columns = ("index_a", "index_b", "box_a", "box_b")
            rows += zip(batch["image_id_a"], *(batch[c].tolist() for c in columns), strict=True)
        return rows

    train = dm.train_dataloader()
    first = held_out()
    pair_keys(train, 3)  # a training epoch in between changes nothing
    assert held_out() == first
    assert [r[0] for r in first] == dm.splits["images_test"].names  # one pair per test image
    assert all(r[2] < HELD_OUT for r in first)  # partners from the test split
    assert len({tuple(r[3]) for r in first}) > HELD_OUT // 2  # boxes differ between pairs


def test_bad_fractions_refused_at_construction():
    with pytest.raises(ValueError, match="0 < min_fraction <= max_fraction <= 1"):
        OLRDataModule(min_fraction=0.5, max_fraction=0.4)


@pytest.mark.slow  # two processes each import torch and Lightning and start gloo
def test_pairs_under_two_process_ddp(root, total, tmp_path):
    """Lightning keeps EpochSampler and the sharded evaluation sampler; per epoch the ranks see
    disjoint shares of every training pair, the same pairs one process draws for that epoch
    (persistent workers included); each held-out pair is evaluated once, the same every epoch."""
    import json

    from ddp_olr_pairs import DATA, EPOCHS
    from ddp_runs import run_script

    run_script("ddp_olr_pairs", ["tests/ddp_olr_pairs.py", root, total - HELD_OUT, tmp_path])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        assert rank["samplers"] == {"train": "EpochSampler", "val": "UnrepeatedDistributedSampler"}

    dm = make(root, total, **DATA)
    train, held_out = dm.splits["train"], dm.splits["val"]

    def row(data: OcclusionPairs, key: tuple[int, int]) -> list:
        item = data[key]
        return [
            key[0],
            key[1],
            int(item["index_b"]),
            item["box_a"].tolist(),
            item["box_b"].tolist(),
        ]

    for epoch in range(EPOCHS):
        shares = [[r for r in rank["train"] if r[0] == epoch] for rank in ranks]
        assert len(shares[0]) == len(shares[1]) == (total - HELD_OUT + 1) // 2
        seen = {r[1] for share in shares for r in share}
        assert seen == set(range(total - HELD_OUT))  # every image paired in every epoch
        for share in shares:
            assert all(r == row(train, (epoch, r[1])) for r in share)
    expected = [row(held_out, (0, i)) for i in range(HELD_OUT)]
    for r, rank in enumerate(ranks):
        per_epoch = len(rank["val"]) // EPOCHS
        assert rank["val"][:per_epoch] == rank["val"][per_epoch:] == expected[r::2]
