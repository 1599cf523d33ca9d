"""The writer of a run's ``last.ckpt``: the weights training ended with, however it ended.

A ModelCheckpoint without a monitor saves at the end of a training epoch, or at the end of
validation when validation does not run every epoch. A run that stops inside an epoch
(``--trainer.max_steps``, ``--trainer.max_time``) or after epochs that ran no validation would
therefore keep the weights of its last save, not its final ones, and evaluate or resume from
them. :class:`LastCheckpoint` also saves when training ends, unless a checkpoint of the final
step was saved already (it watches every save through the public ``on_save_checkpoint`` hook).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from callbacks.run_checkpoint import RunCheckpoint

__all__ = ["LastCheckpoint"]


class LastCheckpoint(RunCheckpoint):
    """Overwrites ``dirpath/last.ckpt`` at every epoch-end save and once more at the end of
    training when steps were taken since the last save."""

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        )
        self.saved_step: int | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.fast_dev_run or trainer.global_step == 0:
            return
        if self.saved_step == trainer.global_step:
            return
        path = self.format_checkpoint_name({})
        trainer.save_checkpoint(path)
        self.last_model_path = self.best_model_path = path
