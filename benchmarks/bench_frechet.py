"""Benchmark: the Frechet step (``callbacks.generative.frechet``) against scipy's ``sqrtm`` route.

Both compute ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` from the same float64
means and covariances of ``--dim``-d features (2048, Inception's pool features): scipy's route
takes ``scipy.linalg.sqrtm(S1 @ S2)`` (torchmetrics' docs and pytorch-fid), ours a Cholesky factor
(or, when both covariances are singular, an eigendecomposition) and ``eigvalsh``. Two cases, each
timed in one run, the routes one after the other (scipy's once, as it takes seconds; ours as the
median of ``--repeats`` runs, as the cores may be shared), with both FIDs and their relative
difference printed beside the ratio:

- ``full rank``: both sets have more samples than dimensions (the Cholesky route);
- ``singular``: both sets have fewer (``--few`` samples): nearly singular covariances, the
  eigendecomposition route.

The CPU thread count is torch's and NumPy's default for this machine unless ``OMP_NUM_THREADS``
is set. On CUDA (``--device cuda``) ours runs on the GPU, scipy on the CPU.

Run: ``python -m benchmarks.bench_frechet [--dim 2048 --many 3000 --few 500 --device cpu]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the reference, as pytest imports it

from frechet_reference import gaussian_of, scipy_frechet  # noqa: E402

from callbacks.generative.frechet import frechet_distance  # noqa: E402


def _timed(fn) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def compare(samples: int, dim: int, device: str, repeats: int) -> dict[str, float]:
    """Times both routes on the Gaussians of two ``samples``-item sets of ``dim``-d features:
    scipy's once, ours as the median of ``repeats`` runs."""
    mu1, s1 = gaussian_of(samples, dim, seed=1)
    mu2, s2 = gaussian_of(samples, dim, seed=2, shift=0.05)
    on_device = [v.to(device) for v in (mu1, s1, mu2, s2)]
    frechet_distance(*[v[:8, :8] if v.ndim == 2 else v[:8] for v in on_device])  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()

    def ours() -> float:
        value = frechet_distance(*on_device)  # returns a float: the device has finished
        return value

    reference, scipy_s = _timed(lambda: scipy_frechet(mu1, s1, mu2, s2))
    runs = [_timed(ours) for _ in range(repeats)]
    value, ours_s = runs[0][0], statistics.median(t for _, t in runs)
    return {
        "scipy_fid": reference,
        "ours_fid": value,
        "relative_difference": abs(value - reference) / abs(reference),
        "scipy_s": scipy_s,
        "ours_s": ours_s,
        "ratio": scipy_s / ours_s,
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension")
    parser.add_argument("--many", type=int, default=3000, help="samples per set, full rank")
    parser.add_argument("--few", type=int, default=500, help="samples per set, singular")
    parser.add_argument("--device", default="cpu", help="device of our route, e.g. cuda")
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours (median)")
    args = parser.parse_args(argv)
    print(
        f"Frechet step on {args.dim}-d covariances, scipy sqrtm route (CPU) vs ours "
        f"({args.device}), torch threads {torch.get_num_threads()}"
    )
    results = {}
    for name, samples in (("full rank", args.many), ("singular", args.few)):
        r = compare(samples, args.dim, args.device, args.repeats)
        results[name] = r
        print(
            f"  {name:9s} ({samples} samples/set): scipy {r['scipy_s']:.2f} s, ours "
            f"{r['ours_s']:.3f} s, ratio {r['ratio']:.1f}x; FID scipy {r['scipy_fid']:.9f}, "
            f"ours {r['ours_fid']:.9f}, relative difference {r['relative_difference']:.1e}"
        )
    return results


if __name__ == "__main__":
    main()
