"""Fit and test MinMaxCAM on the CUB DataModule under 2-process DDP (gloo, CPU); record the batches.

``python tests/ddp_class_sets.py ROOT OUT`` (from the repository root, ``MASTER_PORT`` set): each
rank writes ``OUT/rank<r>.json`` with the class name of the samplers Lightning used and the
``image_id`` lists of its train, val and test batches. ``tests/test_ddp_loaders.py`` runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lightning import Callback, Trainer

from datamodules.cub import CUBDataModule
from lightning_modules.minmaxcam import MinMaxCAM

#: What the test rebuilds in one process to compare with.
DATA = {
    "image_size": 32, "resize_size": 36, "classes_per_batch": 2, "samples_per_class": 2,
    "eval_batch_size": 3, "num_workers": 0, "seed": 3,
}  # fmt: skip
#: Stage II on: its backward reaches fc.weight only, which plain DDP accepts through
#: ``components.manual_ddp.partial_backward``.
WEIGHTS = {"crr_weight": 1.0, "frr_weight": 1.0}


class RecordBatches(Callback):
    """Keeps the ``image_id`` of every batch per stage and the samplers of the loaders in use."""

    def __init__(self) -> None:
        self.seen: dict[str, list] = {"train": [], "val": [], "test": []}
        self.samplers: dict[str, str] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen["train"].append(batch["image_id"])
        self.samplers["train"] = type(trainer.train_dataloader.sampler).__name__

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *_) -> None:
        self.seen["val"].append(batch["image_id"])
        self.samplers["val"] = type(trainer.val_dataloaders.sampler).__name__

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, *_) -> None:
        self.seen["test"].append(batch["image_id"])
        self.samplers["test"] = type(trainer.test_dataloaders.sampler).__name__


def main(root: str, out: str) -> None:
    data = CUBDataModule(root=root, **DATA)
    module = MinMaxCAM(backbone="tiny", width=4, num_classes=6, samples_per_class=2, **WEIGHTS)
    record = RecordBatches()
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[record],
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data)
    result = {"samplers": record.samplers, **record.seen}
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
