"""``benchmarks/gpu.py`` (``make bench-gpu``): every method builds from its YAML and is timed."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu


def test_skips_without_cuda(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path)]) is None
    assert "skipped: no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "gpu_bench.md").exists()


def test_cpu_check_writes_one_table_with_every_method(tmp_path):
    path = gpu.main(["--cpu", "--steps", "1", "--warmup", "1", "--out", str(tmp_path)])
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0][2:] for row in rows[1:]] == [m.name for m in gpu.METHODS]
    assert "failed" not in text, text
    for row in rows[1:]:
        fp32, bf16, ratio = (cell.strip() for cell in row.strip("| ").split(" | ")[1:])
        # the cells are rounded (0.1 images/s, 0.01x): the ratio of the rounded rates is off
        # from the printed one by at most what 0.05 images/s on each rate and 0.005x allow
        assert ratio.endswith("x")
        fast, slow = float(bf16), float(fp32)
        slack = fast / slow * (0.05 / slow + 0.05 / fast) + 0.005
        assert float(ratio[:-1]) == pytest.approx(fast / slow, abs=slack)
    for module, _, _ in gpu.METRIC_BENCHMARKS:
        assert f"{module} --device cpu" in text
    assert text.count("(exit 0)") == len(gpu.METRIC_BENCHMARKS), text
