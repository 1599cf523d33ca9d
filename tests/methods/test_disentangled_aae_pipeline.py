"""`make smoke NAME=disentangled_aae/synthetic` on the tiny twin: every stage (fit, test, predict)
and the analysis run for one batch, chained, and the smoke folder is removed (slow: about two
minutes). It catches what a stage's own tests do not: the YAMLs, the `best:` chain between the
stages, the runner's test and predict steps, the analysis on real stage runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ddp_runs import clean_env

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_synthetic_pipeline_runs_end_to_end_for_one_batch(synthetic_faces_root, tmp_path):
    command = [sys.executable, "-m", "experiments", "run"]
    command += ["--config", str(REPO / "experiments" / "_base.yaml")]
    command += ["--config", str(REPO / "experiments" / "disentangled_aae" / "synthetic.yaml")]
    command += [
        f"--data.init_args.root={synthetic_faces_root / 'celeba'}",
        "--data.init_args.synthetic=null",
        "--data.init_args.persons_per_batch=8",  # the tiny twin's clips: 2 per person
        "--data.init_args.clips_per_person=2",
        f"--run.root={tmp_path / 'runs'}",
        "--trainer.fast_dev_run=true",
        "--trainer.logger=false",
    ]
    done = subprocess.run(
        command, cwd=REPO, env=clean_env({"OMP_NUM_THREADS": "2"}), capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "step 4/4 'analysis': finished in" in done.stdout, done.stdout[-3000:]
    assert done.stdout.splitlines()[-1].startswith("Smoke run: removed")
