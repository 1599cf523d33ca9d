"""The FID benchmark runs on a few images and reports equal FIDs beside its ratio."""

from __future__ import annotations

import pytest

from benchmarks.bench_fid import main


@pytest.mark.slow  # torchmetrics' compute alone (eigvals of 2048 x 2048) takes seconds
def test_bench_fid_reports_a_ratio_with_equal_results(capsys):
    results = main(["--n", "5", "--size", "16", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert results["torchmetrics_fid"] > 1
    assert results["relative_difference"] < 1e-4
    assert results["ratio"] > 0
    assert "ratio (torchmetrics / cached)" in out and "calibrated random weights" in out
    assert "generated images/s" in out
