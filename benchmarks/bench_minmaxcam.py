"""Training throughput of MinMaxCAM (VGG16, 224 px, N x m = 12 x 5) with data loading included.

Times ``Trainer.fit`` batches (both stages per batch) under each precision on the same data and
prints images/s after ``--warmup`` batches, and the ratio of each precision to the first, measured
in the same run. The data is a synthetic-birds twin at the real image size range, written to a
temporary folder unless ``--root`` names one (an existing twin there is reused).

This benchmark is about the GPU: without CUDA it prints that it was skipped and exits 0 (so that
``make bench`` goes on), unless ``--cpu`` asks for CPU timings anyway.

Run: ``python -m benchmarks.bench_minmaxcam --steps 30`` (``--root /tmp/birds`` keeps the twin).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.throughput import training_rate
from datamodules.cub import CUBDataModule
from datamodules.synthetic.birds import make_synthetic_cub
from lightning_modules.minmaxcam import MinMaxCAM

# (λ1, λ2) of thesis Table 5.1 per backbone; the tiny CPU backbone takes ResNet's
LOSS_WEIGHTS = {"vgg16": (1.0, 10.0), "resnet50": (10.0, 1.0), "mobilenet_v2": (10.0, 1.0)}


def throughput(
    root: Path,
    precision: str,
    backbone: str,
    image_size: int,
    classes_per_batch: int,
    samples_per_class: int,
    steps: int,
    warmup: int,
    workers: int,
    accelerator: str,
) -> float:
    """Images/s of ``steps`` timed MinMaxCAM training batches after ``warmup`` untimed ones."""
    data = CUBDataModule(
        root=str(root),
        image_size=image_size,
        resize_size=round(image_size * 256 / 224),
        num_workers=workers,
        classes_per_batch=classes_per_batch,
        samples_per_class=samples_per_class,
    )
    data.setup("fit")
    crr, frr = LOSS_WEIGHTS.get(backbone, LOSS_WEIGHTS["resnet50"])
    model = MinMaxCAM(
        backbone=backbone,
        num_classes=data.num_classes,
        samples_per_class=samples_per_class,
        crr_weight=crr,
        frr_weight=frr,
    )
    return training_rate(model, data, precision, steps, warmup, accelerator)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Time every ``--precisions`` entry; print one line each and return images/s per precision."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="twin folder (default: temporary)")
    parser.add_argument("--backbone", default="vgg16", choices=[*LOSS_WEIGHTS, "tiny"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes-per-batch", type=int, default=12, help="N")
    parser.add_argument("--samples-per-class", type=int, default=5, help="m")
    parser.add_argument("--steps", type=int, default=30, help="timed batches per precision")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--cpu", action="store_true", help="time on the CPU (no CUDA needed)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("bench_minmaxcam: skipped: no CUDA device (GPU throughput; --cpu times the CPU)")
        return {}
    with tempfile.TemporaryDirectory(prefix="latentlab-birds-") as scratch:
        root = args.root if args.root is not None else Path(scratch)
        if not (root / "metadata").exists():
            print(f"bench_minmaxcam: writing the synthetic birds to {root}")
            make_synthetic_cub(root, num_classes=20, per_class=(60, 5, 5))
        rates = {
            precision: throughput(
                root,
                precision,
                args.backbone,
                args.image_size,
                args.classes_per_batch,
                args.samples_per_class,
                args.steps,
                args.warmup,
                args.workers,
                "cpu" if args.cpu else "gpu",
            )
            for precision in args.precisions
        }
    batch = args.classes_per_batch * args.samples_per_class
    first = args.precisions[0]
    for precision, rate in rates.items():
        print(
            f"{precision}: {rate:.1f} images/s, {rate / rates[first]:.2f}x {first} "
            f"({args.backbone}, {args.image_size} px, batch {batch}, both stages, with loading)"
        )
    return rates


if __name__ == "__main__":
    main()
