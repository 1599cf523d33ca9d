"""Epoch values under DDP: two gloo processes (``ddp_spawn``) log what one process logs.

The evaluation loaders shard without repeats (``Unrepeated``: rank r of W holds items r, r + W,
..., so shares differ by one item), as the DataModules' evaluation loaders do. Every epoch value
must equal the one-process value on the same items, be the same on both ranks, and be logged
without Lightning's "use sync_dist=True" warning (turned into an error in the workers).
"""

from __future__ import annotations

import atexit
import json
import warnings
from pathlib import Path

import pytest
import torch
from lightning import Callback, LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, DistributedSampler

from callbacks.gather import gather_rows
from callbacks.global_log import log_global
from lightning_modules.components.epoch_means import EpochMeans

ITEMS = 7  # two ranks: 4 and 3 items; batches of 2: (2, 2) and (2, 1)


class Unrepeated(DistributedSampler):
    """Rank r of W gets items r, r + W, ...: each item once, shares at most one apart."""

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class Shards(LightningDataModule):
    """The same item list for val, test and predict, sharded by ``Unrepeated``; ``facts`` become
    attributes (what a module checks at setup)."""

    def __init__(self, items: list, batch_size: int = 2, collate=None, **facts) -> None:
        super().__init__()
        self.items, self.batch_size, self.collate = items, batch_size, collate
        for name, value in facts.items():
            setattr(self, name, value)

    def _loader(self) -> DataLoader:
        ddp = torch.distributed.is_initialized()
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if ddp else (1, 0)
        sampler = Unrepeated(self.items, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(
            self.items, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate
        )

    val_dataloader = test_dataloader = predict_dataloader = _loader


def _destroy_process_group() -> None:
    """Lightning destroys only NCCL groups at exit; a gloo group left alive lets the interpreter
    exit under its threads, which aborts a spawned rank now and then ("terminate called without
    an active exception")."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class Record(Callback):
    """Writes ``trainer.callback_metrics`` of each rank to ``<out>.<rank>.json``; in a DDP worker
    Lightning's sync_dist warning is an error."""

    def __init__(self, out: str) -> None:
        self.out = out

    def setup(self, trainer, pl_module, stage) -> None:
        warnings.filterwarnings("error", message=".*sync_dist=True.*")
        if torch.distributed.is_initialized():  # a spawned rank: end its gloo group at exit
            atexit.register(_destroy_process_group)

    def _write(self, trainer) -> None:
        values = {k: float(v) for k, v in trainer.callback_metrics.items()}
        Path(f"{self.out}.{trainer.global_rank}.json").write_text(json.dumps(values))

    def on_validation_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer)


def run(tmp_path, devices: int, model, data, stage: str, callbacks=()) -> list[dict]:
    """``Trainer.<stage>`` on 1 process or ``devices`` gloo processes; each rank's metrics."""
    out = str(tmp_path / f"{stage}_{devices}")
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record(out), *callbacks],
        default_root_dir=tmp_path / f"root_{stage}_{devices}",
    )
    getattr(trainer, stage)(model, datamodule=data)
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(devices)]


def assert_same_as_one_process(tmp_path, make_model, data, stage, make_callbacks=list, rel=0.0):
    """Both ranks log the same keys and values, equal to one process's (within ``rel``).

    ``make_model()`` and ``make_callbacks()`` build fresh objects for each run.
    """
    alone = run(tmp_path, 1, make_model(), data, stage, make_callbacks())[0]
    ranks = run(tmp_path, 2, make_model(), data, stage, make_callbacks())
    assert ranks[0] == ranks[1]
    assert ranks[0] == pytest.approx(alone, rel=rel, abs=0.0)
    return alone


class Tiny(LightningModule):
    """Logs the batch mean of ``x`` (an epoch mean) and the sum of the gathered ``x`` (global)."""

    def __init__(self) -> None:
        super().__init__()
        self.means = EpochMeans(["val/mean"])
        self.seen: list[torch.Tensor] = []

    def validation_step(self, batch, batch_idx) -> None:
        self.means.log(self, {"val/mean": batch.mean()}, batch_size=len(batch))
        self.seen.append(batch)

    def on_validation_epoch_end(self) -> None:
        gathered = gather_rows(torch.cat(self.seen))
        log_global(self, {"val/first": gathered[0], "val/items": float(len(gathered))})
        self.seen = []


@pytest.mark.slow
def test_epoch_means_and_global_values_over_uneven_shares(tmp_path):
    items = [torch.tensor(float(i) ** 2) for i in range(ITEMS)]
    alone = assert_same_as_one_process(tmp_path, Tiny, Shards(items), "validate")
    # the item-weighted mean, not the mean of batch means nor a floored count (Lightning's
    # sync_dist mean of 4 + 3 items would divide by 6)
    assert alone == {"val/mean": 13.0, "val/first": 0.0, "val/items": 7.0}
