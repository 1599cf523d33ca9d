"""Training throughput of MinMaxCAM (VGG16, 224 px, N x m = 12 x 5) with data loading included.

Writes a synthetic-birds twin at the real image size range (if ``--root`` has none), then times
``Trainer.fit`` steps (both stages per batch) under fp32 and bf16-mixed on the same data, and
prints images/s (after ``--warmup`` steps). GPU only for meaningful numbers.

Run: ``python -m benchmarks.bench_minmaxcam --root /tmp/birds --steps 30``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from lightning import Callback, Trainer

from datamodules.cub import CUBDataModule
from datamodules.synthetic.birds import make_synthetic_cub
from lightning_modules.minmaxcam import MinMaxCAM


class _Clock(Callback):
    """Wall time of the training steps after ``warmup``, synchronized at the boundaries."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.images = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.images += len(batch["label"])
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            self.end = time.perf_counter()


def throughput(root: Path, precision: str, steps: int, warmup: int, workers: int) -> float:
    data = CUBDataModule(
        root=str(root), num_workers=workers, classes_per_batch=12, samples_per_class=5
    )
    model = MinMaxCAM(backbone="vgg16", num_classes=20, crr_weight=1.0, frr_weight=10.0)
    clock = _Clock(warmup)
    trainer = Trainer(
        precision=precision,
        max_steps=steps + warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[clock],
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return clock.images / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if not (args.root / "metadata").exists():
        make_synthetic_cub(args.root, num_classes=20, per_class=(60, 5, 5))
    for precision in ("32-true", "bf16-mixed"):
        rate = throughput(args.root, precision, args.steps, args.warmup, args.workers)
        print(
            f"{precision}: {rate:.1f} images/s (VGG16, 224 px, batch 60, both stages, with loading)"
        )


if __name__ == "__main__":
    main()
