"""``components.manual_ddp`` under real 2-process DDP (gloo, CPU): ddp_partial_backward.py.

A step on part of the model fails under plain ``strategy="ddp"`` with ``manual_backward``; with
``partial_backward`` it runs, the ranks stay identical, and two processes on half a batch each end
where one process on the whole batch does (DDP averages the gradients of means of equal halves),
and ``broadcast_buffers`` gives every rank rank zero's buffers when validation starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ddp_runs import Finished, run_script


def _fit(out: Path, devices: int, *extra: str, check: bool = True) -> Finished:
    out.mkdir(parents=True)
    script = ["tests/ddp_partial_backward.py", out, devices, *extra]
    return run_script(f"{devices} process(es) {' '.join(extra)}", script, check=check)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in json.loads(path.read_text()).items()}


@pytest.mark.slow  # three fits in fresh processes, two of them with 2 ranks
def test_partial_backward_averages_like_one_process(tmp_path):
    _fit(tmp_path / "single", 1)
    _fit(tmp_path / "ddp", 2)
    reference = _weights(tmp_path / "single" / "rank0.json")
    ranks = [_weights(tmp_path / "ddp" / f"rank{r}.json") for r in range(2)]
    for name, value in reference.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # the buffer too
        if name != "seen":  # each process sums what it saw
            torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6)

    plain = _fit(tmp_path / "plain", 2, "plain", check=False)
    assert plain.returncode != 0
    assert "did not receive grad" in plain.output or "unused" in plain.output, plain.tail()
