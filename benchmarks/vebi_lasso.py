"""Benchmark: VEBI's mu-lasso (``lightning_modules.vebi.lasso.solve_mu_lasso``) at CUB's size.

The problem has the shape of the CUB stand-in of the spec: n = 5,994 training images, m = 9,568
filter responses (AlexNet's conv1-5 and fc6-7: 96 + 256 + 384 + 384 + 256 + 4096 + 4096),
C = 200 classes, mu = 10 (the paper's). The responses are made like real x vectors: per layer
block, non-negative filter strengths (a shared base, a sparse class-specific part and per-image
variation) L1-normalised to sum to 1; the labels are the multi-hot matrix L^T of CUB, one class
per image, 29-30 images per class. Data are made on the CPU from a fixed seed, then moved to the
device; the time is the solve alone (the Gram product, when the form is chosen, included),
synchronised on CUDA. Each row gives the form (``auto``: the solver's choice by shape), seconds,
the most and mean steps of a column and how many columns converged.

Run: ``python -m benchmarks.vebi_lasso`` (a row for the CPU, and for CUDA when present;
``--devices cuda`` for the GPU alone; ``--forms gram direct`` to time both forms; ``--small``
for a quick CPU check at a twentieth of the size).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))

from lightning_modules.vebi.lasso import prefers_gram, solve_mu_lasso  # noqa: E402

ALEXNET_BLOCKS = (96, 256, 384, 384, 256, 4096, 4096)  # conv1-5, fc6, fc7
CUB = {"images": 5994, "blocks": ALEXNET_BLOCKS, "classes": 200}
SMALL = {"images": 300, "blocks": tuple(b // 20 for b in ALEXNET_BLOCKS), "classes": 10}
FORMS = {"auto": None, "gram": True, "direct": False}


def cub_like_problem(
    images: int, blocks: tuple[int, ...], classes: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (n, m) float32 response vectors, B (n, C) float32 one class per image), on the CPU."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(images) % classes)[torch.randperm(images, generator=g)]
    parts = []
    for size in blocks:
        base = torch.rand(size, generator=g) ** 4  # a few filters fire on every image
        by_class = torch.rand(classes, size, generator=g) ** 8  # sparse class-specific filters
        strength = (base + by_class[labels]) * (0.5 + torch.rand(images, size, generator=g))
        parts.append(strength / strength.sum(1, keepdim=True))
    return torch.cat(parts, 1), torch.nn.functional.one_hot(labels, classes).float()


def time_mu_lasso(
    A: torch.Tensor, B: torch.Tensor, device: str, mu: float = 10.0, form: str = "auto", **kw
) -> dict[str, float]:
    """Solve once on ``device``; seconds, steps (most, mean), converged columns and the form."""
    A, B = A.to(device), B.to(device)
    gram = FORMS[form]
    if gram is None:
        gram = prefers_gram(*A.shape, B.shape[1])
    _synchronize(device)
    start = time.perf_counter()
    solution = solve_mu_lasso(A, B, mu, gram=gram, **kw)
    _synchronize(device)
    seconds = time.perf_counter() - start
    steps = solution.iterations.double()
    return {
        "seconds": seconds,
        "most_steps": int(steps.max()),
        "mean_steps": float(steps.mean()),
        "converged": int(solution.converged.sum()),
        "form": "gram" if gram else "direct",
    }


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    parser.add_argument("--devices", nargs="+", default=default_devices)
    parser.add_argument("--forms", nargs="+", choices=sorted(FORMS), default=["auto"])
    parser.add_argument("--mu", type=float, default=10.0, help="l1 radius (the paper's 10)")
    parser.add_argument("--max-iter", type=int, default=10_000)
    parser.add_argument("--small", action="store_true", help="a twentieth of CUB's size, CPU only")
    args = parser.parse_args(argv)
    size, devices = (SMALL, ["cpu"]) if args.small else (CUB, args.devices)
    A, B = cub_like_problem(size["images"], size["blocks"], size["classes"])
    print(
        f"mu-lasso, n={A.shape[0]} m={A.shape[1]} C={B.shape[1]} mu={args.mu}, "
        f"CPU threads {torch.get_num_threads()}"
    )
    print("| device | form | seconds | most steps | mean steps | converged |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = []
    for device in devices:
        for form in args.forms:
            r = time_mu_lasso(A, B, device, args.mu, form, max_iter=args.max_iter)
            rows.append({"device": device, **r})
            print(
                f"| {device} | {r['form']} | {r['seconds']:.2f} | {r['most_steps']} | "
                f"{r['mean_steps']:.1f} | {r['converged']}/{B.shape[1]} |"
            )
    return rows


if __name__ == "__main__":
    main()
