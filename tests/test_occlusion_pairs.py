"""OcclusionPairs and EpochSampler on a small in-memory dataset: keys, determinism, epochs, DDP."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.pairs import EpochSampler, OcclusionPairs

N, SIDE = 40, 20


class Tagged(Dataset):
    """Item i: an image of constant value (i + 1) / 100 and labels = the bits of i."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict:
        bits = torch.tensor([(i >> b) & 1 for b in range(6)], dtype=torch.float32)
        image = torch.full((3, SIDE, SIDE), (i + 1) / 100)
        return {"image": image, "attributes": bits, "image_id": f"{i:06d}.jpg"}


def pairs(seed: int = 0, **kwargs) -> OcclusionPairs:
    return OcclusionPairs(Tagged(), seed=seed, **kwargs)


def test_item_keys_and_content():
    data, base = pairs(), Tagged()
    item = data[(3, 5)]
    assert set(item) == {
        "image_a", "image_b", "attributes_a", "attributes_b", "index_a", "index_b",
        "image_id_a", "image_id_b", "box_a", "box_b", "epoch",
    }  # fmt: skip
    assert item["index_a"] == 5 and item["epoch"] == 3 and item["index_b"] == data.partner(5, 3)
    for side in ("a", "b"):
        source = base[int(item[f"index_{side}"])]
        top, left, h, w = item[f"box_{side}"].tolist()
        assert torch.equal(item[f"attributes_{side}"], source["attributes"])
        assert item[f"image_id_{side}"] == source["image_id"]
        expected = source["image"].clone()
        expected[:, top : top + h, left : left + w] = 0
        assert torch.equal(item[f"image_{side}"], expected)
        assert 0.33 * SIDE <= h <= 0.66 * SIDE and 0.33 * SIDE <= w <= 0.66 * SIDE
    assert data[5]["index_b"] == data[(0, 5)]["index_b"]  # a plain index is epoch 0


def test_pure_function_of_seed_epoch_index():
    first, second = pairs(seed=1), pairs(seed=1)
    for key in [(0, 0), (2, 7), (9, 39)]:
        a, b = first[key], second[key]
        assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(first[(2, 7)]["box_a"], pairs(seed=1)[(2, 7)]["box_a"])


def test_epochs_and_seeds_draw_fresh_partners_and_boxes():
    data = pairs()
    partners = torch.tensor([[data.partner(i, e) for i in range(N)] for e in range(6)])
    assert (partners[0] != partners[1]).float().mean() > 0.8  # a new partner each epoch
    # Partners are uniform over the dataset, drawn independently: repeats happen (no permutation).
    assert partners.min() == 0 and partners.max() == N - 1
    assert any(len(set(row.tolist())) < N for row in partners)
    boxes = {tuple(data[(e, 4)]["box_a"].tolist()) for e in range(6)}
    assert len(boxes) == 6  # the same image is occluded afresh in every epoch
    same = pairs(seed=0)[(1, 4)]
    other = pairs(seed=5)[(1, 4)]
    assert not torch.equal(same["box_a"], other["box_a"]) or same["index_b"] != other["index_b"]
    # The two sides of one pair have their own boxes.
    distinct = sum(not torch.equal(data[i]["box_a"], data[i]["box_b"]) for i in range(N))
    assert distinct > N * 0.9


def test_second_view_occludes_image_a_afresh_and_leaves_the_pair_alone():
    plain, viewed, base = pairs(), pairs(second_view=True), Tagged()
    for key in [(0, 3), (2, 7), (5, 39)]:
        item, extra = plain[key], viewed[key]
        assert set(extra) == set(item) | {"image_a2", "box_a2"}
        assert all(
            torch.equal(item[k], extra[k]) for k in item if isinstance(item[k], torch.Tensor)
        )
        top, left, h, w = extra["box_a2"].tolist()
        expected = base[int(item["index_a"])]["image"].clone()
        expected[:, top : top + h, left : left + w] = 0
        assert torch.equal(extra["image_a2"], expected)
        assert 0.33 * SIDE <= h <= 0.66 * SIDE and 0.33 * SIDE <= w <= 0.66 * SIDE
    distinct = sum(not torch.equal(viewed[i]["box_a"], viewed[i]["box_a2"]) for i in range(N))
    assert distinct > N * 0.9  # the self pair's two sides hide different parts


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="0 < min_fraction <= max_fraction <= 1"):
        pairs(min_fraction=0.7, max_fraction=0.5)
    with pytest.raises(IndexError, match="pair index 40 out of range for 40 items"):
        pairs()[40]


def collect(loader: DataLoader, epoch: int) -> dict[int, tuple]:
    loader.sampler.set_epoch(epoch)
    seen = {}
    for batch in loader:
        for k in range(len(batch["index_a"])):
            key = int(batch["index_a"][k])
            seen[key] = (int(batch["index_b"][k]), tuple(batch["box_a"][k].tolist()))
            assert batch["epoch"][k] == epoch
    return seen


def test_epoch_sampler_feeds_workers_the_epoch():
    """With persistent workers, set_epoch on the sampler still changes the pairs (the epoch rides
    in the keys), and two loaders (0 and 2 workers) give identical pairs per epoch."""
    data = pairs()
    plain = DataLoader(data, batch_size=8, sampler=EpochSampler(data, seed=0))
    workers = DataLoader(
        data, batch_size=8, sampler=EpochSampler(data, seed=0), num_workers=2,
        persistent_workers=True,
    )  # fmt: skip
    for epoch in (0, 1, 2):
        expected = {i: (data.partner(i, epoch), tuple(data[(epoch, i)]["box_a"].tolist()))
                    for i in range(N)}  # fmt: skip
        assert collect(plain, epoch) == expected
        assert collect(workers, epoch) == expected


def test_epoch_sampler_order_and_ddp_shares():
    data = pairs()
    one = EpochSampler(data, seed=0, num_replicas=1, rank=0)
    one.set_epoch(0)
    first = list(one)
    one.set_epoch(1)
    assert sorted(i for _, i in first) == list(range(N)) and {e for e, _ in first} == {0}
    assert [i for _, i in first] != [i for _, i in one]  # reshuffled per epoch
    shares = []
    for rank in range(3):
        sampler = EpochSampler(data, seed=0, num_replicas=3, rank=rank)
        sampler.set_epoch(4)
        shares.append(list(sampler))
    assert [len(s) for s in shares] == [14, 14, 14]  # 40 padded to 42
    keys = [k for s in shares for k in s]
    assert {e for e, _ in keys} == {4} and {i for _, i in keys} == set(range(N))
