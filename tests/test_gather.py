"""callbacks.gather and callbacks.global_log under a real two-process gloo group, uneven shares."""

from __future__ import annotations

import json

import pytest
import torch
from ranks import run_in_group

from callbacks.base import FirstBatch
from callbacks.gather import gather_items, gather_rows, interleaved_positions
from callbacks.global_log import log_global

ITEMS = 5  # rank 0 holds items 0, 2, 4; rank 1 holds 1, 3


def _whole() -> torch.Tensor:
    return torch.arange(ITEMS * 3, dtype=torch.float64).view(ITEMS, 3)


class _NoLog:
    device = torch.device("cpu")


def _gather_a_share(rank: int, world: int, out: str) -> None:
    share = _whole()[rank::world]
    names = [f"item{i}" for i in range(ITEMS)][rank::world]
    result = {
        "interleaved": gather_rows(share).tolist(),
        "rank": gather_rows(share, order="rank").tolist(),
        "bool": gather_rows(share[:, 0] > 4).tolist(),
        "names": gather_items(names),
    }
    try:
        gather_rows(_whole()[: 2 + rank])  # 2 and 3 rows: not a strided sharding
    except ValueError as error:
        result["error"] = str(error)
    panel = FirstBatch(3)  # 10 items, batches of 4: rank r's first batch is r, r + 2, ...
    panel.keep({"x": torch.arange(10)[rank::2][:4], "id": [f"i{i}" for i in range(rank, 8, 2)]})
    panel.gather(world)
    result["panel"] = {"x": panel.values["x"].tolist(), "id": panel.values["id"]}
    try:
        log_global(_NoLog(), {"test/equal": 1.0, "test/score": float(rank)})
    except ValueError as error:
        result["log_error"] = str(error)
    with open(f"{out}.{rank}", "w") as file:
        json.dump(result, file)


@pytest.mark.slow  # two spawned processes
def test_gather_restores_the_dataset_order_of_uneven_shares(tmp_path):
    run_in_group(_gather_a_share, 2, str(tmp_path / "out"))
    parts = [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(2)]
    assert parts[0] == parts[1]
    whole = _whole()
    assert parts[0]["interleaved"] == whole.tolist()
    assert parts[0]["rank"] == torch.cat([whole[0::2], whole[1::2]]).tolist()
    assert parts[0]["bool"] == (whole[:, 0] > 4).tolist()
    assert parts[0]["names"] == [f"item{i}" for i in range(ITEMS)]
    assert "[2, 3] are not a strided sharding of 5 items" in parts[0]["error"]
    assert parts[0]["panel"] == {"x": [0, 1, 2], "id": ["i0", "i1", "i2"]}  # one process's rows
    assert "different values (rank by rank) {'test/score': [0.0, 1.0]}" in parts[0]["log_error"]


def test_interleaved_positions_and_single_process():
    assert interleaved_positions([3, 2]).tolist() == [0, 2, 4, 1, 3]
    assert interleaved_positions([1, 1, 0]).tolist() == [0, 1]
    with pytest.raises(ValueError, match="repeats or drops items"):
        interleaved_positions([2, 3])
    rows = torch.ones(4, 2)
    assert gather_rows(rows) is rows  # no process group: unchanged
    assert gather_items(("a", "b")) == ["a", "b"]
