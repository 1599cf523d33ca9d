"""Benchmark: the box metrics' paths against the straightforward per-image, per-threshold loop.

The straightforward loop is the independent reference of the tests (``tests/wsol_reference.py``:
[WSOL]'s evaluation loop written literally, for every one of the 100 thresholds
``cv2.threshold``, ``cv2.findContours``, box(es), IoU). Two parts, each timed in one run, the
paths in turn on the same chunks of maps (so that a machine whose speed drifts slows all
alike), each result checked equal to the loop's:

- map families (``--maps`` 224 px maps each, ``map_family``: CAMs upsampled from 7, 14 and 28 px
  grids, blurred noise, pixel noise, object-like blobs, blobs with a little noise): the loop
  (both contour rules from one pass of contours) against ``max_box_ious_per_rule`` with
  ``method`` ``auto``, ``level_sets`` and ``cv2``, as ratios of the loop's time to each; with
  the inputs of ``auto``'s choice (``callbacks/wsol/level_sets/choice.py``: median row
  segments and mean cut boundary) and the share of maps it analysed;
- the metrics (``--num-images`` blob CAMs, 14 px -> 224 px): ``MaxBoxAccuracy``,
  ``MaxBoxAccuracyV2`` and both through ``WSOLMetrics``, resize and normalization included,
  against the loop with ``cv2.resize``.

Run: ``python -m benchmarks.bench_maxboxacc`` (``--maps 48 --num-images 5794`` for the CUB
test-set size; ``--families blobs pixel_noise`` for a few).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the reference, as pytest imports it

from wsol_reference import (  # noqa: E402
    FAMILIES,
    make_cams,
    map_family,
    straightforward_box_hits,
    straightforward_hits,
    straightforward_ious,
    straightforward_normalize,
)

from callbacks.wsol.boxes import _pad_boxes, available_threads, max_box_ious_per_rule  # noqa: E402
from callbacks.wsol.level_sets import TO_CV2, analyse, workspace  # noqa: E402
from callbacks.wsol.level_sets.choice import cut_boundary  # noqa: E402
from callbacks.wsol.level_sets.segments import row_segments  # noqa: E402
from callbacks.wsol.metrics import MaxBoxAccuracy, MaxBoxAccuracyV2, WSOLMetrics  # noqa: E402


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
    ``v1v2`` times the ``WSOLMetrics`` path, both metrics from one box analysis, against the
    two straightforward runs (as [WSOL] evaluates them, one run per metric), ``v1v2_shared``
    against one straightforward run that scores both rules on the same contours. The maps go
    by in chunks of ``chunk`` images, each timed with every implementation in turn, so that a
    machine whose speed drifts during the run (a shared one) slows all of them alike.
    ``warmup_s`` is the untimed first call of each path on two maps (numba compiles the
    analysis once per machine, then loads it from its cache).
    """
    cams, boxes = make_cams(num_images, 14, seed=0, kind=kind)
    start = time.perf_counter()
    for metric in (MaxBoxAccuracy(), MaxBoxAccuracyV2(), WSOLMetrics()):
        update = metric.update_boxes if isinstance(metric, WSOLMetrics) else metric.update
        update(torch.from_numpy(cams[:2]).to(device), boxes[:2])
    results = {"warmup_s": time.perf_counter() - start}
    metrics = {"v1": MaxBoxAccuracy(workers=workers), "v2": MaxBoxAccuracyV2(workers=workers)}
    shared = WSOLMetrics(workers=workers)
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
    fast = [getattr(shared, key).hits.cpu().numpy() for key in ("maxboxacc", "maxboxacc_v2")]
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


METHODS = ("auto", "level_sets", "cv2")


def family_run(
    family: str, num_maps: int, workers: int | None = None, chunk: int = 8, seed: int = 0
) -> dict[str, float]:
    """Time the loop and each ``method`` on ``num_maps`` maps of one family (both rules).

    The paths take the maps in chunks of ``chunk``: the loop, then the methods, each first in
    turn and timed on its second pass over the chunk.

    Returns seconds per map of the loop (``loop_ms``), the ratio of the loop's time to each
    method's (``<method>_ratio``), whether each equals the loop (``<method>_equal``), the median
    row segments and mean cut boundary of the maps (``level_sets.choice``) and the share that
    ``auto`` analyses.
    """
    maps, boxes = map_family(family, num_maps, seed)
    thresholds = np.arange(0, 1, 0.01)
    tensor = torch.from_numpy(maps)
    for method in METHODS:  # compile or load the analysis before timing
        max_box_ious_per_rule(tensor[:1], boxes[:1], thresholds, workers=workers, method=method)
    seconds = dict.fromkeys(("loop", *METHODS), 0.0)
    found = {name: [] for name in seconds}
    for step, first in enumerate(range(0, num_maps, chunk)):
        part, part_boxes = maps[first : first + chunk], boxes[first : first + chunk]
        start = time.perf_counter()
        found["loop"].append(np.stack(straightforward_ious(part, part_boxes, [False, True])))
        seconds["loop"] += time.perf_counter() - start
        part_maps = tensor[first : first + chunk]
        for method in METHODS[step % 3 :] + METHODS[: step % 3]:
            # untimed first: a pass after other work pays for caches and idle threads
            run = partial(max_box_ious_per_rule, part_maps, part_boxes, thresholds)
            run(workers=workers, method=method)
            start = time.perf_counter()
            ious = run(workers=workers, method=method)
            seconds[method] += time.perf_counter() - start
            found[method].append(np.stack(ious))
    loop = np.concatenate(found["loop"], axis=1)
    choice = analyse(maps, thresholds, *_pad_boxes(boxes), method="auto")
    work = workspace(*maps.shape[1:])
    segments = [row_segments(m, work.seg_start, work.seg_top, work.row_first) for m in maps]
    boundary = [cut_boundary(s8) for s8 in choice.s8]
    results = {
        "maps": num_maps,
        "segments": float(np.median(segments)),
        "boundary": float(np.median(boundary)),
        "auto_analysed": float(np.mean(choice.status != TO_CV2)),
        "loop_ms": 1e3 * seconds["loop"] / num_maps,
    }
    for method in METHODS:
        results[f"{method}_ratio"] = seconds["loop"] / seconds[method]
        equal = np.array_equal(np.concatenate(found[method], axis=1), loop)
        results[f"{method}_equal"] = float(equal)
    return results


def family_table(
    families: tuple[str, ...], num_maps: int, workers: int | None = None
) -> list[tuple[str, dict[str, float]]]:
    """``family_run`` of every family, printed as a Markdown table as it goes.

    Pixel noise gets a quarter of the maps (at least two): the loop takes seconds per map.
    """
    print(
        "| family | maps | segments | boundary | auto analyses | loop ms/map | auto | level_sets "
        "| cv2 | equal |\n|---|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    rows = []
    for family in families:
        count = max(2, num_maps // 4) if family == "pixel_noise" else num_maps
        row = family_run(family, count, workers)
        equal = all(row[f"{method}_equal"] == 1.0 for method in METHODS)
        ratios = " | ".join(f"{row[f'{method}_ratio']:.2f}x" for method in METHODS)
        print(
            f"| {family} | {count} | {row['segments']:.0f} | {row['boundary']:.0f} "
            f"| {100 * row['auto_analysed']:.0f} % "
            f"| {row['loop_ms']:.1f} | {ratios} | {'yes' if equal else 'NO'} |",
            flush=True,
        )
        rows.append((family, row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=32, help="maps per family (pixel noise: 1/4)")
    parser.add_argument(
        "--families", nargs="*", choices=FAMILIES, default=list(FAMILIES), help="none: skip them"
    )
    parser.add_argument("--num-images", type=int, default=1024, help="CAMs of the metric part")
    parser.add_argument("--kind", choices=["blob", "random"], default="blob")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    args = parser.parse_args()
    threads = available_threads(args.workers)
    rows = []
    if args.families:  # the analysis runs on the CPU, whatever ``--device``
        print(
            f"Map families, 224 px, both contour rules, {threads} thread(s); ratios are the "
            "loop's time over each method's (higher is faster), measured in this run"
        )
        rows = family_table(tuple(args.families), args.maps, args.workers)
    print(
        f"\nMetrics: {args.num_images} {args.kind} CAMs (14 x 14 -> 224), batched path on "
        f"{args.device}, {threads} thread(s)"
    )
    results = run(args.num_images, args.kind, device=args.device, workers=args.workers)
    for key, value in results.items():
        print(f"{key}: {value:.3f}")
    equal = [row[f"{m}_equal"] for _, row in rows for m in METHODS]
    equal += [results[f"{name}_equal"] for name in ("v1", "v2", "v1v2")]
    if not all(value == 1.0 for value in equal):
        raise SystemExit("a path disagrees with the straightforward loop")


if __name__ == "__main__":
    main()
