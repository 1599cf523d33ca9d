"""Benchmark: the default experiment's epoch time alone and next to one busy process, as a ratio.

Runs ``face_attributes/synthetic`` (``python -m experiments fit``) reduced to ``--batches``
training and ``--val-batches`` validation batches per epoch, two epochs, and times the second
(training and validation; the first starts the loader workers). Each setting runs alone, then
next to one busy process (a Python spin loop, started and killed here); the ratio is the slowdown.
A run that shares its cores fairly slows down in proportion to the cores the other process takes.

- new: ``python -m experiments`` as it is (``experiments/cores.py``: intra-op threads and loader
  workers sized to the cores, ``OMP_WAIT_POLICY=PASSIVE``);
- old: what runs did before: one intra-op thread per core (``OMP_NUM_THREADS`` set to the core
  count, which the budget leaves alone) and OpenMP's default wait policy. The config's one loader
  worker is what the budget leaves it on two cores or more, as before.

Run: ``python -m benchmarks.bench_shared_cores [--batches 20 --val-batches 5]`` (a few minutes
on two cores; the old setting next to a busy process takes most of it). The first run writes the
synthetic faces (``data/synthetic_faces_small``) before its first epoch.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning import Callback

REPO = Path(__file__).resolve().parents[1]
NAME = "face_attributes/synthetic"
OLD = (
    "import sys, warnings; from experiments.cli import LatentLabCLI; "
    "warnings.filterwarnings('ignore', message='LightningCLI'); LatentLabCLI(args=sys.argv[1:])"
)


class EpochClock(Callback):
    """Prints ``epoch_seconds <epoch> <seconds>`` at each epoch's end (training + validation)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self.start
        print(f"epoch_seconds {trainer.current_epoch} {seconds:.3f}", flush=True)


def _command(setting: str, batches: int, val_batches: int, root: str) -> list[str]:
    entry = ["-m", "experiments"] if setting == "new" else ["-c", OLD]
    return [
        sys.executable,
        *entry,
        "fit",
        f"--config={REPO / 'experiments' / '_base.yaml'}",
        f"--config={REPO / 'experiments' / f'{NAME}.yaml'}",
        "--trainer.max_epochs=2",
        f"--trainer.limit_train_batches={batches}",
        f"--trainer.limit_val_batches={val_batches}",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.callbacks+=benchmarks.bench_shared_cores.EpochClock",
        f"--run.root={root}",
    ]


def _environ(setting: str) -> dict[str, str]:
    environ = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        environ.pop(name, None)
    if setting == "old":
        environ["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
    return environ


def epoch_time(setting: str, busy: bool, batches: int, val_batches: int) -> tuple[float, str]:
    """Seconds of the second epoch, and the run's line about its threads and workers."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-shared-cores-") as root:
            run = subprocess.run(
                _command(setting, batches, val_batches, root),
                cwd=REPO,
                env=_environ(setting),
                capture_output=True,
                text=True,
            )
    finally:
        if spin is not None:
            spin.kill()
            spin.wait()
    times = re.findall(r"^epoch_seconds 1 ([\d.]+)$", run.stdout, re.MULTILINE)
    if run.returncode != 0 or not times:
        raise RuntimeError(f"the {setting} run failed:\n{run.stderr[-3000:]}")
    budget = re.search(r"\d+ intra-op threads.*$", run.stderr + run.stdout, re.MULTILINE)
    return float(times[0]), budget.group(0) if budget else ""


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Time both settings alone and next to a busy process; print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="training batches per epoch")
    parser.add_argument("--val-batches", type=int, default=5, help="validation batches per epoch")
    parser.add_argument("--settings", nargs="+", default=["new", "old"], choices=["new", "old"])
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(
        f"{NAME}, {args.batches} + {args.val_batches} val batches per epoch, second epoch, "
        f"{cores} cores, load average {load:.2f} at the start"
    )
    ratios = {}
    for setting in args.settings:
        alone, budget = epoch_time(setting, False, args.batches, args.val_batches)
        shared, _ = epoch_time(setting, True, args.batches, args.val_batches)
        ratios[setting] = shared / alone
        print(
            f"  {setting}: alone {alone:.1f} s, next to a busy process {shared:.1f} s: "
            f"{ratios[setting]:.2f}x  ({budget})",
            flush=True,
        )
    print(f"  load average {os.getloadavg()[0]:.2f} at the end")
    return ratios


if __name__ == "__main__":
    main()
