"""Fit a stand-in module on OLR pairs under 2-process DDP (gloo, CPU); record the pairs each saw.

``python tests/ddp_olr_pairs.py ROOT TRAIN_COUNT OUT`` (from the repository root, ``MASTER_PORT``
set): each rank writes ``OUT/rank<r>.json`` with the class names of the samplers Lightning used
and, per stage, the ``(epoch, index_a, index_b, box_a, box_b)`` rows of every pair it saw.
``tests/test_olr_datamodule.py`` runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning import LightningModule, Trainer

from datamodules.olr import OLRDataModule

#: What the test rebuilds in one process to compare with.
DATA = {"image_size": 46, "batch_size": 8, "num_workers": 1, "pairs": True, "seed": 2}
EPOCHS = 2


class RecordPairs(LightningModule):
    """One weight (DDP needs a gradient); keeps the pairs of every batch and the samplers."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[str, list] = {"train": [], "val": []}
        self.samplers: dict[str, str] = {}

    def _record(self, stage: str, batch: dict) -> torch.Tensor:
        columns = ("epoch", "index_a", "index_b", "box_a", "box_b")
        self.seen[stage] += zip(*(batch[c].tolist() for c in columns), strict=True)
        return self.weight * batch["image_a"].mean()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.samplers["train"] = type(self.trainer.train_dataloader.sampler).__name__
        return self._record("train", batch)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.samplers["val"] = type(self.trainer.val_dataloaders.sampler).__name__
        self._record("val", batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(root: str, train_count: str, out: str) -> None:
    data = OLRDataModule(root=root, train_count=int(train_count), **DATA)
    module = RecordPairs()
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    result = {"samplers": module.samplers, **module.seen}
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
