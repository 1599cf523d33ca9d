"""Benchmark: FID of N generated images against cached real statistics vs torchmetrics' default.

Both paths score the same ``--n`` generated images against the same ``--n`` real images with
the same Inception weights file, TF1 resize (torchmetrics with ``antialias=False``):

- cached (``callbacks/fid.py``'s path): the real set's statistics were computed once and written
  to a statistics file (not timed, printed as the one-time cost); the timed part reads the file,
  extracts the generated images' features (``FIDInceptionV3`` into ``FeatureGaussian``) and
  computes ``frechet_distance``;
- torchmetrics' ``FrechetInceptionDistance(feature=2048, normalize=True)``: extracts the real and
  the generated images' features, then ``compute()`` (``eigvals`` of the covariance product).

Images are made batch by batch from fixed seeds (smooth random images for the real set, a
noisier family for the generated one), at ``--size`` px (the network resizes them to 299), so
``--n 10000`` never holds the set in memory; making them is not timed. The output gives both
times (each split into feature extraction and the rest), their ratio, generated images scored
per second and images through the network per second of each path, and both FIDs with their
relative difference. Torch runs ``--threads`` threads (default 1: on a shared 2-core machine
LAPACK's ``eigvals`` in torchmetrics' ``compute`` slows down many times over with a second
thread, which would flatter the ratio).

Weights: ``--weights``, else the copy in the weights folder or torch's hub cache, else (this
machine has no network) a random Inception with calibrated batch-norm statistics written to a
temporary folder, said in the output: the times are those of the real network either way, the
FIDs then are not ImageNet's.

Run: ``python -m benchmarks.bench_fid [--n 64 --size 32 --batch-size 16 --device cpu]``;
on a GPU: ``python -m benchmarks.bench_fid --device cuda --n 10000 --size 299 --batch-size 200``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the calibrated weights, as the tests make them

from inception_weights import write_calibrated_weights  # noqa: E402
from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: E402

from callbacks.generative.frechet import frechet_distance  # noqa: E402
from callbacks.generative.gaussian import FeatureGaussian  # noqa: E402
from callbacks.generative.stats_file import RealStats, read_stats, write_stats  # noqa: E402
from lightning_modules.components.inception import (  # noqa: E402
    INCEPTION,
    FIDInceptionV3,
    hub_cache_path,
)


def batches(n: int, size: int, batch_size: int, real: bool) -> Iterator[torch.Tensor]:
    """The set's images in [0, 1], ``batch_size`` at a time, the same for every call."""
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        g = torch.Generator().manual_seed(2 * start + int(real))
        coarse = torch.rand(count, 3, 4 if real else 16, 4 if real else 16, generator=g)
        images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
        noise = (0.02 if real else 0.1) * torch.randn(images.shape, generator=g)
        yield (images + noise).clamp(0, 1)


class Clock:
    """Sums the time of the ``with`` blocks, waiting for the device at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Clock:
        self._sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self.start


def extract(extractor, n, size, batch_size, real, device) -> tuple[FeatureGaussian, float]:
    gaussian, clock = FeatureGaussian(extractor.num_features).to(device), Clock(device)
    for images in batches(n, size, batch_size, real):
        images = images.to(device)
        with clock:
            gaussian.update(extractor(images))
    return gaussian, clock.seconds


def weights_file(given: str | None, folder: Path) -> tuple[str, str]:
    if given is not None:
        return given, given
    for place, where in ((INCEPTION.path(), "the weights folder"), (hub_cache_path(), "hub cache")):
        if place.is_file():
            return str(place), f"{place} ({where})"
    path = write_calibrated_weights(folder)
    return str(path), "calibrated random weights (no weights file here; pass --weights)"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="generated images = real images")
    parser.add_argument("--size", type=int, default=32, help="image size in px")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="e.g. cuda")
    parser.add_argument("--weights", default=None, help="the Inception weights file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n, size, batch = args.n, args.size, args.batch_size
    with tempfile.TemporaryDirectory() as folder:
        path, described = weights_file(args.weights, Path(folder))
        print(
            f"FID of {n} generated images against {n} real ones, {size} px, batches of {batch}, "
            f"{device}, torch threads {args.threads}; weights: {described}"
        )
        extractor = FIDInceptionV3(path).to(device)
        extractor(next(batches(2, size, 2, True)).to(device))  # warm-up
        # one-time cost of the cached path: the real set's statistics, written to a file
        real, real_s = extract(extractor, n, size, batch, True, device)
        mean, covariance, count = real.compute()
        key = {"dataset": "bench", "split": "val", "resolution": [size, size], "count": n}
        stats_file = Path(folder) / "real.pt"
        write_stats(stats_file, key, RealStats(mean, covariance, count))

        ours_rest = Clock(device)
        with ours_rest:
            stats = read_stats(stats_file, key, extractor.num_features).to(device)
        fake, fake_s = extract(extractor, n, size, batch, False, device)
        with ours_rest:
            fake_mean, fake_covariance, _ = fake.compute()
            ours = frechet_distance(stats.mean, stats.covariance, fake_mean, fake_covariance)
        ours_s = ours_rest.seconds + fake_s

        metric = FrechetInceptionDistance(
            feature=2048, normalize=True, antialias=False, feature_extractor_weights_path=path
        ).to(device)
        clock, rest = Clock(device), Clock(device)
        for is_real in (True, False):
            for images in batches(n, size, batch, is_real):
                images = images.to(device)
                with clock:
                    metric.update(images, real=is_real)
        with rest:
            theirs = float(metric.compute())
        theirs_s = clock.seconds + rest.seconds
    result = {
        "ours_fid": ours,
        "torchmetrics_fid": theirs,
        "relative_difference": abs(ours - theirs) / abs(theirs),
        "ours_s": ours_s,
        "torchmetrics_s": theirs_s,
        "ratio": theirs_s / ours_s,
        "real_statistics_s": real_s,
    }
    print(
        f"  cached statistics: {ours_s:.2f} s (extraction {fake_s:.2f} s, file + Frechet "
        f"{ours_rest.seconds:.2f} s): {n / ours_s:.1f} generated images/s, as many through "
        f"the network; "
        f"one-time real-set statistics {real_s:.2f} s\n"
        f"  torchmetrics default (real + generated): {theirs_s:.2f} s (extraction "
        f"{clock.seconds:.2f} s, compute {rest.seconds:.2f} s): {n / theirs_s:.1f} generated "
        f"images/s, {2 * n / theirs_s:.1f} images/s through the network\n"
        f"  ratio (torchmetrics / cached): {result['ratio']:.2f}x; FID cached {ours:.6f}, "
        f"torchmetrics {theirs:.6f}, relative difference {result['relative_difference']:.1e}"
    )
    return result


if __name__ == "__main__":
    main()
