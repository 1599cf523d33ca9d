"""Benchmark: batched MaxBoxAcc/MaxBoxAccV2 against a straightforward per-image, per-threshold loop.

The straightforward loop is the independent reference of the tests (``tests/wsol_reference.py``:
[WSOL]'s evaluation loop written literally, cv2 resize per image, then for every one of the 100
thresholds ``cv2.threshold``, ``cv2.findContours``, box(es), IoU). Both are timed in the same
run on the same maps; the results must be identical.

Run: ``python -m benchmarks.bench_maxboxacc --num-images 5794`` (the CUB test-set size).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the reference, as pytest imports it

from wsol_reference import (  # noqa: E402
    make_cams,
    straightforward_box_hits,
    straightforward_hits,
    straightforward_normalize,
)

from callbacks.wsol.boxes import available_threads  # noqa: E402
from callbacks.wsol.callback import LogWSOLMetrics  # noqa: E402
from callbacks.wsol.metrics import MaxBoxAccuracy, MaxBoxAccuracyV2  # noqa: E402


def run(
    num_images: int,
    kind: str,
    batch_size: int = 64,
    device: str = "cpu",
    workers: int | None = None,
    chunk: int = 512,
) -> dict[str, float]:
    """Time both implementations on the same maps; return the seconds and the speed-ups.

    ``v1`` and ``v2`` time each metric alone (``MaxBoxAccuracy`` / ``MaxBoxAccuracyV2.update``);
    ``v1v2`` times the ``LogWSOLMetrics`` path, both metrics from one box analysis, against the
    two straightforward runs (as [WSOL] evaluates them, one run per metric), ``v1v2_shared``
    against one straightforward run that scores both rules on the same contours. The maps go
    by in chunks of ``chunk`` images, each timed with every implementation in turn, so that a
    machine whose speed drifts during the run (a shared one) slows all of them alike.
    ``warmup_s`` is the untimed first call of each path on two maps (numba compiles the
    analysis once per machine, then loads it from its cache).
    """
    cams, boxes = make_cams(num_images, 14, seed=0, kind=kind)
    start = time.perf_counter()
    for metric in (MaxBoxAccuracy(), MaxBoxAccuracyV2(), LogWSOLMetrics()):
        update = metric.update_boxes if isinstance(metric, LogWSOLMetrics) else metric.update
        update(torch.from_numpy(cams[:2]).to(device), boxes[:2])
    results = {"warmup_s": time.perf_counter() - start}
    metrics = {"v1": MaxBoxAccuracy(workers=workers), "v2": MaxBoxAccuracyV2(workers=workers)}
    shared = LogWSOLMetrics(workers=workers)
    slow_hits = {name: 0 for name in metrics}
    seconds = dict.fromkeys(["v1_straightforward", "v1_batched", "v2_straightforward"], 0.0)
    seconds.update(
        dict.fromkeys(["v2_batched", "v1v2_batched", "v1v2_shared_straightforward"], 0.0)
    )
    rules = [(metric.iou_thresholds, metric.multi_contour) for metric in metrics.values()]
    shared_hits = [0, 0]

    def batched(update, first: int, last: int) -> float:
        start = time.perf_counter()
        for i in range(first, last, batch_size):
            j = min(i + batch_size, last)
            update(torch.from_numpy(cams[i:j]).to(device), boxes[i:j])
        return time.perf_counter() - start

    for first in range(0, num_images, chunk):
        last = min(first + chunk, num_images)
        for name, metric in metrics.items():
            start = time.perf_counter()
            maps = np.stack([straightforward_normalize(c) for c in cams[first:last]])
            slow_hits[name] = slow_hits[name] + straightforward_box_hits(
                maps, boxes[first:last], metric.iou_thresholds, metric.multi_contour
            )
            seconds[f"{name}_straightforward"] += time.perf_counter() - start
            seconds[f"{name}_batched"] += batched(metric.update, first, last)
        start = time.perf_counter()
        maps = np.stack([straightforward_normalize(c) for c in cams[first:last]])
        both = straightforward_hits(maps, boxes[first:last], rules)
        shared_hits = [total + part for total, part in zip(shared_hits, both, strict=True)]
        seconds["v1v2_shared_straightforward"] += time.perf_counter() - start
        seconds["v1v2_batched"] += batched(shared.update_boxes, first, last)
        print(f"  {last}/{num_images} maps", flush=True)
    seconds["v1v2_straightforward"] = seconds["v1_straightforward"] + seconds["v2_straightforward"]
    results.update({f"{key}_s": value for key, value in seconds.items()})
    for name, metric in metrics.items():
        results[f"{name}_equal"] = float(np.array_equal(slow_hits[name], metric.hits.cpu().numpy()))
    fast = [shared.metrics[key].hits.cpu().numpy() for key in ("maxboxacc", "maxboxacc_v2")]
    results["v1v2_equal"] = float(
        all(np.array_equal(a, b) for a, b in zip(fast, slow_hits.values(), strict=True))
        and all(np.array_equal(a, b) for a, b in zip(fast, shared_hits, strict=True))
    )
    for name in ("v1", "v2", "v1v2"):
        results[f"{name}_speedup"] = seconds[f"{name}_straightforward"] / seconds[f"{name}_batched"]
    for name in ("v1", "v2"):  # absolute costs, to tell machine drift from code changes
        results[f"{name}_loop_ms_per_map"] = 1e3 * seconds[f"{name}_straightforward"] / num_images
        results[f"{name}_batched_ms_per_map"] = 1e3 * seconds[f"{name}_batched"] / num_images
    results["v1v2_shared_speedup"] = (
        seconds["v1v2_shared_straightforward"] / seconds["v1v2_batched"]
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=5794)
    parser.add_argument("--kind", choices=["blob", "random"], default="blob")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    args = parser.parse_args()
    print(
        f"{args.num_images} {args.kind} CAMs (14 x 14 -> 224), batched path on {args.device}, "
        f"{available_threads(args.workers)} thread(s)"
    )
    results = run(args.num_images, args.kind, device=args.device, workers=args.workers)
    for key, value in results.items():
        print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()
