"""Benchmark: SSIM of a CelebA-sized test set, batched torch against a per-image scikit-image loop.

The set is ``--num-images`` colour images of ``--size`` px (default 19,962 at 64 px, the size of
CelebA's test split at the crops the suite's methods use): smooth random targets with noise,
predictions that are the targets with more noise, made batch by batch from fixed seeds (their
making is not timed). ``callbacks.image_quality.ssim.ssim`` scores every image in batches of
``--batch-size`` with ``--threads`` torch threads (default 1, as the scikit-image loop: on a
shared 2-core machine a second thread waits for the other process's core); scikit-image's
``structural_similarity`` (gaussian weights, sigma 1.5, population covariance,
``data_range=1``, ``channel_axis=0``) scores ``--skimage-images`` of them one by one, a few from
each batch so that a machine whose speed drifts slows both alike, and its time for the whole set
is extrapolated per image (said in the output). The per-image values of both on those images
are compared; the full ``LogImageQuality`` update (SSIM, MS-SSIM and PSNR) is timed too.

Run: ``python -m benchmarks.bench_ssim`` (``--num-images 2000`` for a quick run).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))

from callbacks.image_quality.metric import ImageQuality  # noqa: E402
from callbacks.image_quality.ssim import ssim  # noqa: E402


def make_batch(index: int, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(preds, target), ``count`` float32 colour images in [0, 1], the same for each ``index``."""
    g = torch.Generator().manual_seed(index)
    coarse = torch.rand(count, 3, size // 8, size // 8, generator=g)
    target = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    target = (target + 0.05 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    preds = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    return preds, target


def skimage_ssim(preds: torch.Tensor, target: torch.Tensor) -> list[float]:
    return [
        structural_similarity(
            t,
            p,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        for p, t in zip(preds.double().numpy(), target.double().numpy(), strict=True)
    ]


def run(num_images: int, size: int, batch_size: int, skimage_images: int) -> dict[str, float]:
    """Seconds of each path, the mean SSIM of each, and the largest per-image difference."""
    batches = math.ceil(num_images / batch_size)
    per_batch = math.ceil(min(skimage_images, num_images) / batches)
    torch_s = metric_s = skimage_s = 0.0
    torch_sum, ours_on_subset, theirs = 0.0, [], []
    metric = ImageQuality(data_range=1.0)
    for index in range(batches):
        count = min(batch_size, num_images - index * batch_size)
        preds, target = make_batch(index, count, size)
        start = time.perf_counter()
        values = ssim(preds, target, data_range=1.0)
        torch_s += time.perf_counter() - start
        torch_sum += values.sum().item()
        start = time.perf_counter()
        metric.update(preds, target)
        metric_s += time.perf_counter() - start
        take = min(per_batch, skimage_images - len(theirs), count)
        start = time.perf_counter()
        theirs += skimage_ssim(preds[:take], target[:take])
        skimage_s += time.perf_counter() - start
        ours_on_subset += values[:take].tolist()
    measured = len(theirs)
    return {
        "torch_s": torch_s,
        "metric_s": metric_s,
        "skimage_measured_s": skimage_s,
        "skimage_images": measured,
        "skimage_s": skimage_s / measured * num_images,
        "torch_mean": torch_sum / num_images,
        "metric_ssim": metric.compute()["ssim"].item(),
        "torch_subset_mean": float(np.mean(ours_on_subset)),
        "skimage_subset_mean": float(np.mean(theirs)),
        "max_difference": float(np.max(np.abs(np.array(ours_on_subset) - np.array(theirs)))),
    }


def report(r: dict[str, float], num_images: int, size: int, threads: int) -> str:
    ratio = r["skimage_s"] / r["torch_s"]
    return "\n".join(
        [
            f"SSIM of {num_images} images 3 x {size} x {size} px (torch {threads} thread(s), "
            "scikit-image 1 process):",
            f"  torch batched      {r['torch_s']:8.2f} s   mean SSIM {r['torch_mean']:.10f}",
            f"  scikit-image loop  {r['skimage_s']:8.2f} s   extrapolated per image from "
            f"{r['skimage_images']:.0f} images ({r['skimage_measured_s']:.2f} s)",
            f"  on those {r['skimage_images']:.0f} images: mean SSIM torch "
            f"{r['torch_subset_mean']:.10f}, scikit-image {r['skimage_subset_mean']:.10f}, "
            f"largest per-image difference {r['max_difference']:.1e}",
            f"  ratio (scikit-image / torch): {ratio:.1f}x",
            f"  LogImageQuality update (SSIM + MS-SSIM + PSNR): {r['metric_s']:.2f} s, "
            f"mean SSIM {r['metric_ssim']:.10f}",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=19962)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--skimage-images", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="MS-SSIM on")  # the scale note, said once below
        results = run(args.num_images, args.size, args.batch_size, args.skimage_images)
    print(report(results, args.num_images, args.size, args.threads))
    return results


if __name__ == "__main__":
    main()
