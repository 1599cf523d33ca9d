"""Training throughput of any LightningModule + DataModule: images/s of timed ``fit`` batches.

``training_rate`` fits for ``warmup`` untimed then ``steps`` timed training batches (data loading
included, CUDA synchronized at both ends) and returns images per second. A batch's image count is
the length of its first tensor (``image`` (B, ...) or ``bag`` (B, T, ...) count B). The MinMaxCAM
benchmark and the GPU runner (``benchmarks/gpu.py``) share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch
from lightning import Callback, LightningDataModule, LightningModule, Trainer


def batch_size_of(batch) -> int:
    """Images (or bags) in a batch: the length of its first tensor."""
    values = batch.values() if isinstance(batch, Mapping) else batch
    for value in values:
        if isinstance(value, torch.Tensor):
            return len(value)
    raise ValueError("the batch holds no tensor to count images by")


class Clock(Callback):
    """Wall time and images of the training batches after the first ``warmup``; stops the fit
    after ``warmup + steps`` batches.

    Batches are counted across epochs (``batch_idx`` restarts every epoch); CUDA is synchronized
    at both ends so that queued kernels are inside the measured time. ``max_steps`` is not used:
    it counts optimizer steps, of which a manual-optimization method may take several per batch.
    """

    def __init__(self, warmup: int, steps: int, count: Callable = batch_size_of) -> None:
        if warmup < 0 or steps < 1:
            raise ValueError(f"need warmup >= 0 and steps >= 1, got {warmup} and {steps}")
        self.warmup, self.steps, self.count = warmup, steps, count
        self.batches, self.images = 0, 0
        self.start = self.end = 0.0

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches == self.warmup:
            self.start = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.batches >= self.warmup:
            self.images += self.count(batch)
            self.end = self._now()
        self.batches += 1
        if self.batches >= self.warmup + self.steps:
            trainer.should_stop = True

    @property
    def rate(self) -> float:
        """Images per second over the timed batches."""
        if self.images == 0:
            raise RuntimeError(f"no batch after the {self.warmup} warm-up batches was timed")
        return self.images / (self.end - self.start)


def training_rate(
    model: LightningModule,
    datamodule: LightningDataModule,
    precision: str,
    steps: int,
    warmup: int,
    accelerator: str = "gpu",
) -> float:
    """Images/s of ``steps`` timed training batches after ``warmup`` untimed ones (no val)."""
    clock = Clock(warmup, steps)
    trainer = Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_epochs=10_000,  # finite, for schedules sized by estimated_stepping_batches
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    trainer.fit(model, datamodule=datamodule)
    return clock.rate
