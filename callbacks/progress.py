"""Progress for log files: plain lines, one every ``interval`` seconds and one at each epoch's end.

A rich or tqdm bar redraws one terminal line; written to a file (``sbatch``, ``nohup``, ``| tee``)
it shows nothing until a stage ends. ``LineProgressBar`` prints whole lines instead, flushed:

    epoch 2/14 train 40/150 1.87 it/s ETA 0:00:59 train/loss_step=0.2134 val/hamming=0.0812
    epoch 2/14 done in 0:01:23 (150 train batches, 1.87 it/s) train/loss_epoch=0.2 val/hamming=0.08
    test 10/40 3.10 it/s ETA 0:00:10

Epochs are numbered as Lightning's bars, logs and checkpoint names number them (from 0, of
``max_epochs - 1``). A line shows the progress-bar metrics (``self.log(..., prog_bar=True)``) and
the metric the first ModelCheckpoint monitors. ``default_progress_bar`` picks the rich bar for a
terminal and this one otherwise; the CLI uses it when the config names no progress bar.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, TextIO

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.trainer.states import TrainerFn


def default_progress_bar(stream: TextIO | None = None) -> ProgressBar:
    """``RichProgressBar`` when ``stream`` (default ``sys.stdout``) is a terminal, else
    ``LineProgressBar``."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return RichProgressBar() if isatty is not None and isatty() else LineProgressBar()


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class LineProgressBar(ProgressBar):
    """Progress as plain lines on stdout, for logs.

    Args:
        interval: Seconds between two progress lines within a stage; every epoch also ends with a
            line of its duration and metrics.
    """

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        if not interval > 0:
            raise ValueError(f"LineProgressBar: interval must be > 0 seconds, got {interval}")
        self.interval = interval
        self._enabled = True
        self._last_line = 0.0
        self._clocks: dict[str, tuple[float, int]] = {}  # stage -> (start, batches done)
        self._train_end = 0.0

    # -------------------------------------------------------------- the ProgressBar interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            print(*args, **{"flush": True, **kwargs})

    # -------------------------------------------------------------- lines
    def _start(self, stage: str) -> None:
        self._clocks[stage] = (time.monotonic(), 0)
        self._last_line = time.monotonic()

    def _batch_done(self, trainer: Trainer, stage: str, total: float) -> None:
        start, done = self._clocks.get(stage, (time.monotonic(), 0))
        self._clocks[stage] = (start, done + 1)
        now = time.monotonic()
        if stage == "train":
            self._train_end = now
        if now - self._last_line < self.interval or trainer.sanity_checking:
            return
        self._last_line = now
        rate = (done + 1) / max(now - start, 1e-9)
        finite = total != float("inf")
        count = f"{stage} {done + 1}/{int(total)}" if finite else f"{stage} {done + 1}"
        line = [self._epoch(trainer), count, f"{rate:.2f} it/s"]
        if finite:
            line.append(f"ETA {_duration((total - done - 1) / rate)}")
        self.print(" ".join(part for part in line if part) + self._metrics(trainer))

    def _epoch(self, trainer: Trainer) -> str:
        if trainer.state.fn != TrainerFn.FITTING:
            return ""
        last = trainer.max_epochs - 1 if trainer.max_epochs not in (None, -1) else "?"
        return f"epoch {trainer.current_epoch}/{last}"

    def _metrics(self, trainer: Trainer) -> str:
        metrics = dict(self.get_metrics(trainer, trainer.lightning_module))
        metrics.pop("v_num", None)
        checkpoint = trainer.checkpoint_callback
        monitor = getattr(checkpoint, "monitor", None)
        if monitor and monitor in trainer.callback_metrics:
            metrics[monitor] = float(trainer.callback_metrics[monitor])
        text = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
        return "".join(f" {part}" for part in sorted(text))

    def _stage_done(self, stage: str) -> None:
        start, done = self._clocks.get(stage, (time.monotonic(), 0))
        self.print(f"{stage} done: {done} batches in {_duration(time.monotonic() - start)}")

    # -------------------------------------------------------------- hooks
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start("train")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._batch_done(trainer, "train", trainer.num_training_batches)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        start, done = self._clocks.get("train", (time.monotonic(), 0))
        rate = done / max(self._train_end - start, 1e-9)
        took = _duration(time.monotonic() - start)
        summary = f"{self._epoch(trainer)} done in {took} ({done} train batches, {rate:.2f} it/s)"
        self.print(summary + self._metrics(trainer))
        self._last_line = time.monotonic()

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start("val")

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._batch_done(trainer, "val", sum(trainer.num_val_batches))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._stage_done("val")

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start("test")

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._batch_done(trainer, "test", sum(trainer.num_test_batches))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stage_done("test")

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start("predict")

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._batch_done(trainer, "predict", sum(trainer.num_predict_batches))

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stage_done("predict")
