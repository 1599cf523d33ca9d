"""``components.manual_ddp`` under real 2-process DDP (gloo, CPU): ddp_partial_backward.py.

A step on part of the model fails under plain ``strategy="ddp"`` with ``manual_backward``; with
``partial_backward`` it runs, the ranks stay identical, and two processes on half a batch each end
where one process on the whole batch does (DDP averages the gradients of means of equal halves),
and ``broadcast_buffers`` gives every rank rank zero's buffers when validation starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_runs import free_port

REPO = Path(__file__).resolve().parents[1]


def _fit(out: Path, devices: int, *extra: str) -> subprocess.CompletedProcess:
    out.mkdir(parents=True)
    env = os.environ | {
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
        "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    script = [sys.executable, "tests/ddp_partial_backward.py", str(out), str(devices), *extra]
    return subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in json.loads(path.read_text()).items()}


@pytest.mark.slow  # three fits in fresh processes, two of them with 2 ranks
def test_partial_backward_averages_like_one_process(tmp_path):
    single = _fit(tmp_path / "single", 1)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _fit(tmp_path / "ddp", 2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    reference = _weights(tmp_path / "single" / "rank0.json")
    ranks = [_weights(tmp_path / "ddp" / f"rank{r}.json") for r in range(2)]
    for name, value in reference.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # the buffer too
        if name != "seen":  # each process sums what it saw
            torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6)

    plain = _fit(tmp_path / "plain", 2, "plain")
    assert plain.returncode != 0
    assert "did not receive grad" in plain.stderr or "unused" in plain.stderr, plain.stderr[-3000:]
