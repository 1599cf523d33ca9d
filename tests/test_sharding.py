"""Evaluation sharding: every item exactly once over the ranks, file order per rank, no padding.

Ranks are passed explicitly or faked on ``torch.distributed`` (``fake_world``): no process group.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, RandomSampler

from datamodules.celeba import CelebADataModule
from datamodules.cub import CUBDataModule
from datamodules.ffhq import FFHQDataModule
from datamodules.label_transfer import LabelTransferDataModule
from datamodules.mnist_bags import MNISTBagsDataModule
from datamodules.samplers import ClassSetSampler
from datamodules.sharding import UnrepeatedDistributedSampler, eval_sampler, replicas_and_rank
from datamodules.synthetic.birds import make_synthetic_cub
from datamodules.synthetic.mnist import write_synthetic_mnist


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("size", [3, 7, 10])
def test_each_item_once_in_file_order(world, size):
    shards = [list(UnrepeatedDistributedSampler(range(size), world, r)) for r in range(world)]
    assert sorted(sum(shards, [])) == list(range(size))  # each item exactly once, no padding
    for r, shard in enumerate(shards):
        assert shard == list(range(r, size, world))  # file order
        assert len(UnrepeatedDistributedSampler(range(size), world, r)) == len(shard) >= 1
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_one_process_loader_is_the_plain_loader():
    assert eval_sampler(range(5), "val", num_replicas=1, rank=0) is None
    data = torch.arange(10)
    ours = DataLoader(data, batch_size=4, sampler=eval_sampler(data, "val"))
    assert [b.tolist() for b in ours] == [b.tolist() for b in DataLoader(data, batch_size=4)]


def test_fewer_items_than_ranks_is_an_error():
    with pytest.raises(ValueError, match=r"the test split has 2 items but 3 processes .*devices=2"):
        eval_sampler(range(2), "test", num_replicas=3, rank=0)
    assert list(eval_sampler(range(0), "test", num_replicas=3, rank=2)) == []  # empty stays empty


def test_replicas_and_rank():
    assert not dist.is_initialized()
    assert replicas_and_rank() == (1, 0)
    assert replicas_and_rank(4, 3) == (4, 3)
    with pytest.raises(ValueError, match="rank 4 of 4"):
        replicas_and_rank(4, 4)


@pytest.fixture
def fake_world(monkeypatch):
    """``fake_world(world, rank)``: torch.distributed reports an initialized group of that shape."""

    def fake(world: int, rank: int) -> None:
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda: world)
        monkeypatch.setattr(dist, "get_rank", lambda: rank)

    return fake


def shards(fake_world, make_loader, key: str, world: int = 2) -> list[list]:
    """What each of ``world`` ranks' loaders yield under ``key`` (one entry per item)."""
    out = []
    for rank in range(world):
        fake_world(world, rank)
        out.append([x for batch in make_loader() for x in batch[key]])
    return out


def unpadded(rows: torch.Tensor) -> list[int]:
    """A bag's digit labels without the -1 padding of its batch."""
    return [d for d in rows.tolist() if d >= 0]


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    root = tmp_path_factory.mktemp("birds")
    return make_synthetic_cub(root, num_classes=6, per_class=(4, 2, 3), size_range=(40, 48))


def test_cub_loaders_under_ddp(birds, fake_world):
    data = CUBDataModule(
        root=str(birds), image_size=32, resize_size=36, classes_per_batch=3,
        samples_per_class=2, eval_batch_size=4, num_workers=0, seed=0,
    )  # fmt: skip
    data.setup("fit")
    for split in ("val", "test"):
        ids = data.splits[split].split.image_ids
        loader = getattr(data, f"{split}_dataloader")
        assert shards(fake_world, loader, "image_id") == [ids[0::2], ids[1::2]]
    fake_world(2, 1)
    sampler = data.train_dataloader().sampler
    assert isinstance(sampler, ClassSetSampler) and (sampler.num_replicas, sampler.rank) == (2, 1)
    wide = CUBDataModule(root=str(birds), classes_per_batch=4, num_workers=0)
    wide.setup("test")  # no class sets to draw: no check
    with pytest.raises(ValueError, match="--data.init_args.classes_per_batch=3 or fewer"):
        wide.setup("fit")  # 2 x 4 classes per step, 6 classes
    with pytest.raises(ValueError, match="--data.init_args.classes_per_batch=3 or fewer"):
        wide.train_dataloader()


def test_label_transfer_loaders_under_ddp(synthetic_faces_root, fake_world):
    """CelebA (val, test) and FFHQ (predict) through LabelTransferDataModule; train stays random."""
    common = {"image_size": 16, "batch_size": 8, "num_workers": 0, "normalize": "none"}
    data = LabelTransferDataModule(
        CelebADataModule(root=str(synthetic_faces_root / "celeba"), **common),
        FFHQDataModule(root=str(synthetic_faces_root / "ffhq"), **common),
    )
    data.setup("fit")
    data.setup("predict")
    for split, loader in [("val", data.val_dataloader), ("test", data.test_dataloader)]:
        ids = [item["image_id"] for item in data.source.splits[split]]
        assert shards(fake_world, loader, "image_id") == [ids[0::2], ids[1::2]]
    ids = [item["image_id"] for item in data.target.splits["test"]]
    assert shards(fake_world, data.predict_dataloader, "image_id", 3) == [
        ids[0::3], ids[1::3], ids[2::3]
    ]  # fmt: skip
    # training keeps its shuffled loader: Lightning gives each process its share of it
    assert isinstance(data.train_dataloader().sampler, RandomSampler)


def test_mnist_bags_loaders_under_ddp(tmp_path, fake_world):
    data = MNISTBagsDataModule(
        root=str(write_synthetic_mnist(tmp_path)), num_train_bags=4, num_val_bags=5,
        num_test_bags=7, batch_size=2,
    )  # fmt: skip
    data.setup("fit")
    for split in ("val", "test"):
        bags = [item["instance_labels"].tolist() for item in data.splits[split]]
        loader = getattr(data, f"{split}_dataloader")
        got = shards(fake_world, loader, "instance_labels", 3)
        assert [[unpadded(bag) for bag in shard] for shard in got] == [bags[r::3] for r in range(3)]
    assert isinstance(data.train_dataloader().sampler, RandomSampler)
