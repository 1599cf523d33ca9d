"""VitonDataModule on the tiny twin: the synthetic option, batch contents, provably unpaired
training (two independent streams; disjoint item halves), matched evaluation split once across
ranks, cross pairs, and the setup errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

import datamodules.sharding as sharding
import datamodules.viton as viton_module
from datamodules.formats.errors import DatasetNotFoundError, FormatError, SettingError
from datamodules.sharding import UnrepeatedDistributedSampler
from datamodules.viton import UnpairedSampler, VitonDataModule

H, W = 64, 48


@pytest.fixture
def root(viton_twin_root):
    """The tiny twin, written and cleaned by the DataModule's ``synthetic`` option (conftest)."""
    return viton_twin_root


def _module(root, **kwargs) -> VitonDataModule:
    kwargs = {"num_workers": 0, "synthetic": "tiny", **kwargs}
    data = VitonDataModule(root=str(root), **kwargs)
    data.setup("fit")
    return data


def _rows(data: VitonDataModule, sampler: UnpairedSampler) -> list[tuple[str, str]]:
    """(item worn by the row's person, the row's catalog item), without decoding images."""
    streams = data.splits["train"]
    return [(streams.persons.pairs[i].cloth, streams.items.pairs[j].cloth) for i, j in sampler]


def test_synthetic_option_writes_and_cleans_once(root, caplog, monkeypatch):
    assert (root / "viton_synth.json").exists() and (root / "clean_train_pairs.txt").exists()
    import datamodules.synthetic.viton as twin

    calls = []
    monkeypatch.setattr(twin, "make_viton_synth", lambda *a, **k: calls.append(a))
    VitonDataModule(root=str(root), synthetic="tiny").prepare_data()
    assert calls == []  # up to date: nothing written
    real = root.parent / "real"
    real.mkdir()
    (real / "train_pairs.txt").write_text("")
    VitonDataModule(root=str(real), synthetic="tiny").prepare_data()
    assert calls == [] and not (real / "viton_synth.json").exists()  # real data never written


def test_batch_contents(root):
    data = _module(root, batch_size=4, with_pose=True)
    assert data.image_shape == (H, W) and data.layout.name == "viton"
    assert [len(data.splits[s]) for s in ("val", "test")] == [44, 44]  # val = test when 0
    batch = next(iter(data.train_dataloader()))
    image, mask = batch["image_a"], batch["mask_a"]
    assert image.shape == (4, 3, H, W) and mask.shape == (4, 1, H, W)
    assert image.min() >= -1 and image.max() <= 1 and set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(batch["context_a"], image * (1 - mask))
    assert torch.equal(batch["masked_a"], image * mask + (1 - mask))
    assert (batch["masked_a"][mask.expand_as(image) == 0] == 1).all()
    assert torch.equal(batch["box_a"], masks_to_boxes(mask[:, 0].bool()))
    x0, y0, x1, y1 = batch["box_a"][0].long().tolist()
    assert mask[0, 0, y0 : y1 + 1, x0 : x1 + 1].sum() == mask[0].sum()  # inclusive box
    assert batch["image_b"].shape == (4, 3, H, W)
    assert set(batch["mask_b"].unique().tolist()) == {0.0, 1.0}
    outside = batch["image_b"][batch["mask_b"].expand(-1, 3, -1, -1) == 0]
    assert (outside > 0.9).float().mean() > 0.97  # white (but for JPEG ringing at the edge)
    assert batch["pose_a"].shape == (4, 18, 3)
    small = _module(root, load_size=(32, 24), batch_size=2)
    batch = next(iter(small.val_dataloader()))
    assert batch["image_a"].shape == (2, 3, 32, 24) and batch["mask_b"].shape == (2, 1, 32, 24)


def test_training_streams_are_unpaired(root):
    """Over five epochs a row's catalog item is its person's own item about as often as chance
    (1 / N per row), while the matched evaluation pairs always agree (the check can fail); the
    two streams' orders change with the seed and the epoch."""
    data = _module(root)
    streams = data.splits["train"]
    count = len(streams.persons)
    sampler = UnpairedSampler(count, len(streams.items), seed=0)
    matches = 0
    for epoch in range(5):
        sampler.set_epoch(epoch)
        rows = _rows(data, sampler)
        assert len(rows) == count
        matches += sum(a == b for a, b in rows)
    assert matches <= 15  # chance: 5 expected; a paired stream would give 5 * 394
    test = data.splits["test"]
    assert all(test[i]["item_a"] == test[i]["item_b"] for i in range(0, len(test), 7))
    sampler.set_epoch(0)
    other = UnpairedSampler(count, len(streams.items), seed=1)
    assert sampler.stream(0) != other.stream(0) and sampler.stream(1) != other.stream(1)
    assert sampler.stream(0) != sampler.stream(1)  # not the same permutation on both sides
    later = UnpairedSampler(count, len(streams.items), seed=0)
    later.set_epoch(1)
    assert later.stream(0) != sampler.stream(0)
    # every person and every item once per epoch (equal counts)
    assert sorted(sampler.stream(0)) == list(range(count)) == sorted(sampler.stream(1))
    batch = next(iter(data.train_dataloader()))
    assert batch["image_a"].shape[0] == 1  # the paper's batch size


def test_disjoint_items(root):
    data = _module(root, disjoint_items=True, seed=3)
    mine, theirs = data.item_halves
    train_items = {p.cloth for p in data.splits["train"].persons.pairs} | {
        p.cloth for p in data.splits["train"].items.pairs
    }
    assert not mine & theirs and mine | theirs == train_items and len(mine) - len(theirs) in (0, 1)
    streams = data.splits["train"]
    sampler = UnpairedSampler(len(streams.persons), len(streams.items), seed=3)
    rows = _rows(data, sampler)
    assert len(rows) == max(len(mine), len(theirs))
    assert {a for a, _ in rows} <= mine and {b for _, b in rows} <= theirs
    assert not {a for a, _ in rows} & {b for _, b in rows}
    assert _module(root, disjoint_items=True, seed=4).item_halves[0] != mine


def test_ranks_share_the_streams_and_evaluate_each_pair_once(root, monkeypatch):
    data = _module(root, val_fraction=0.1)
    streams = data.splits["train"]
    single = list(UnpairedSampler(len(streams.persons), len(streams.items), seed=0))
    ranks = [
        list(UnpairedSampler(len(streams.persons), len(streams.items), 0, 2, r)) for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single) // 2
    assert [row for pair in zip(*ranks, strict=True) for row in pair] == single[: 2 * len(ranks[0])]
    val = data.splits["val"]
    assert len(val) == 39 and all(val[i]["item_a"] == val[i]["item_b"] for i in range(len(val)))
    held = {p.person for p in val.persons.pairs}
    assert not held & {p.person for p in streams.persons.pairs}
    for rank in (0, 1):
        monkeypatch.setattr(sharding, "replicas_and_rank", lambda n=None, r=None, k=rank: (2, k))
        monkeypatch.setattr(
            viton_module, "replicas_and_rank", lambda n=None, r=None, k=rank: (2, k)
        )
        loader = data.test_dataloader()
        assert isinstance(loader.sampler, UnrepeatedDistributedSampler)
        assert list(loader.sampler) == list(range(rank, 44, 2))
        assert isinstance(data.train_dataloader().sampler, UnpairedSampler)


def test_cross_pairs(root):
    data = _module(root, test_cross=True, eval_batch_size=4)
    assert data.has_cross_pairs and len(data.cross) <= 44
    test_names = {p.person for p in data.splits["test"].persons.pairs}
    assert {p.person for p in data.cross.persons.pairs} <= test_names
    matched, cross = data.test_dataloader()
    batch = next(iter(cross))
    assert batch["target"].shape == (4, 3, H, W) and batch["target_mask"].shape == (4, 1, H, W)
    assert all(a != b for a, b in zip(batch["item_a"], batch["item_b"], strict=True))
    assert all(
        a.replace("_0", "_1") == b for a, b in zip(batch["name_a"], batch["item_a"], strict=True)
    )
    assert len(next(iter(matched))["name_a"]) == 4


def test_setup_errors(root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no longer distributed by its authors"):
        VitonDataModule(root=str(tmp_path / "nothing")).setup("fit")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "clean_test_pairs.txt").unlink()
    (copy / "test_cross_pairs.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"make data DATASET=viton ROOT=.*copy"):
        VitonDataModule(root=str(copy), image_size=(H, W)).setup("fit")
    assert VitonDataModule(root=str(copy)).file_size == (H, W)  # a twin's size, from its sidecar
    data = _module(copy, pairs="original")
    assert len(data.splits["test"]) == 48 and not data.has_cross_pairs
    with pytest.raises(SettingError, match="test_cross=true"):
        _module(copy, pairs="original", test_cross=True)
    with pytest.raises(
        FormatError, match=r"clean_train_pairs.txt:1: .*is 64x48 \(H x W\), expected"
    ):
        VitonDataModule(root=str(copy), image_size=(256, 192)).setup("fit")
    line = (copy / "clean_train_pairs.txt").read_text().splitlines()[2]
    cloth = copy / "train" / "cloth-mask" / line.split()[1]
    from datamodules.formats.viton import write_jpeg

    write_jpeg(cloth, np.zeros((H, W), np.uint8))
    with pytest.raises(FormatError, match=r"clean_train_pairs.txt:3: .*the item's mask is empty"):
        _module(copy)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_error_hints_are_commands_that_work(root, tmp_path):
    """Each `make data` hint of the errors runs the prepare command on the root the run reads, and
    each `--data.init_args` flag is an argument of VitonDataModule."""
    from test_data_hints import hints

    with pytest.raises(DatasetNotFoundError) as missing:
        VitonDataModule(root=str(tmp_path / "nothing")).setup("fit")
    parsed = hints(missing.value, tmp_path, VitonDataModule)
    assert [a.dataset for a in parsed] == ["viton", "synthetic-viton"]
    assert parsed[0].root == str(tmp_path / "nothing")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "clean_train_pairs.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as unclean:
        VitonDataModule(root=str(copy)).setup("fit")
    (args,) = hints(unclean.value, tmp_path, VitonDataModule)
    assert args.dataset == "viton" and args.root == str(copy)
