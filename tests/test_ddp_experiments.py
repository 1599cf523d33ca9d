"""Each method's smoke experiment under DDP, through the real CLI on 2 CPU processes (gloo), reports
what one process reports on the same data.

For each method: ``python -m experiments run ... --trainer.devices=2 --trainer.strategy=ddp`` for
one epoch must finish with exactly one run folder (one ``config.yaml``, one ``metrics.csv``, one
``last.ckpt``). Then one process validates and tests that run's weights
(``python -m experiments validate|test --config <run>/config.yaml --ckpt_path <run>/.../last.ckpt
--trainer.devices=1``), and every val and test metric the 2-process run logged must equal the
one-process value within ``REL``. Not bit-exact: each process sums its own share of the epoch's
batch means in float32, in another order than one process does; sums of counts (WSOL metrics,
AUROC ranks) agree exactly anyway. One epoch, so the weights validated after it, the checkpoint
the run tested ("best" of one epoch) and ``last.ckpt`` are the same weights.

The weights themselves are trained by 2 processes; that DDP trains as one process on the
doubled batch is ``tests/test_partial_backward.py``'s and the loaders' tests' (here only the
evaluation is compared). A simulated two-node launch is ``tests/test_multiprocess_launch.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ddp_runs import REPO, only_run_dir, run_ddp, run_single, stage_metrics

pytestmark = pytest.mark.slow  # three CLI runs per method, two of them with 2 processes

REL = 1e-5


@dataclass(frozen=True)
class Smoke:
    """A method's smoke experiment and what it needs on 2 processes."""

    name: str
    twin: str
    args: list[str] = field(default_factory=list)


SMOKES = [
    Smoke("face_attributes/synthetic_tiny", "faces"),
    Smoke("mil_lstm/synthetic_single", "mnist"),
    # 10 twin classes: N = 5 per process, the single-process run's N = 10 over both
    Smoke("minmaxcam/synthetic", "birds", ["--data.init_args.classes_per_batch=5"]),
]


def _data_flags(twin: str, folder: Path, faces: Path) -> list[str]:
    if twin == "faces":
        return [
            f"--data.init_args.source.init_args.root={faces / 'celeba'}",
            f"--data.init_args.target.init_args.root={faces / 'ffhq'}",
        ]
    if twin == "mnist":
        from datamodules.synthetic.mnist import write_synthetic_mnist

        return [f"--data.init_args.root={write_synthetic_mnist(folder / 'mnist')}"]
    from datamodules.synthetic.birds import make_synthetic_cub

    root = make_synthetic_cub(folder / "birds", 10, (8, 3, 4), (72, 96), seed=0)
    return [f"--data.init_args.root={root}"]


def _one_process(subcommand: str, run: Path, root: Path, name: str) -> dict[str, float]:
    """``subcommand`` (validate|test) of ``run``'s last.ckpt in one process; its logged metrics."""
    args = [
        "--config", str(run / "config.yaml"),
        f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"--run.root={root}", "--trainer.strategy=auto",
    ]  # fmt: skip
    run_single(subcommand, args)
    stage = "val" if subcommand == "validate" else "test"
    return stage_metrics(only_run_dir(root, name), stage)


@pytest.mark.parametrize("smoke", SMOKES, ids=lambda s: s.name.split("/")[0])
def test_two_processes_report_what_one_process_reports(smoke, synthetic_faces_root, tmp_path):
    args = [
        "--config", str(REPO / "experiments" / "_base.yaml"),
        "--config", str(REPO / "experiments" / f"{smoke.name}.yaml"),
        *_data_flags(smoke.twin, tmp_path, Path(synthetic_faces_root)),
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", *smoke.args,
    ]  # fmt: skip
    run_ddp("run", [*args, f"--run.root={tmp_path / 'ddp'}"], devices=2)
    run = only_run_dir(tmp_path / "ddp", smoke.name)
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()

    for subcommand, stage in (("validate", "val"), ("test", "test")):
        one = _one_process(subcommand, run, tmp_path / subcommand, smoke.name)
        two = stage_metrics(run, stage)
        assert one, f"one process logged no {stage} metrics"
        assert set(one) <= set(two), f"not logged by 2 processes: {sorted(set(one) - set(two))}"
        differ = {
            key: (two[key], value)
            for key, value in one.items()
            if two[key] != pytest.approx(value, rel=REL, abs=1e-7)
        }
        assert not differ, f"{stage} (2 processes, 1 process): {differ}"
