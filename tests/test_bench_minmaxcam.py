"""The MinMaxCAM throughput benchmark: its skip without CUDA, and a tiny CPU run."""

from __future__ import annotations

import torch

from benchmarks import bench_minmaxcam
from datamodules.synthetic.birds import make_synthetic_cub


def test_skips_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_minmaxcam.main([]) == {}
    assert "skipped: no CUDA device" in capsys.readouterr().out


def test_times_every_precision_on_a_tiny_cpu_twin(tmp_path, capsys):
    root = make_synthetic_cub(tmp_path, num_classes=4, per_class=(6, 1, 1), size_range=(80, 96))
    argv = ["--root", str(root), "--cpu", "--backbone", "tiny", "--image-size", "64"]
    argv += ["--classes-per-batch", "2", "--samples-per-class", "3", "--workers", "0"]
    argv += ["--steps", "3", "--warmup", "1", "--precisions", "32-true", "bf16-mixed"]
    rates = bench_minmaxcam.main(argv)
    assert set(rates) == {"32-true", "bf16-mixed"}
    out = capsys.readouterr().out
    ratio = rates["bf16-mixed"] / rates["32-true"]
    assert f"bf16-mixed: {rates['bf16-mixed']:.1f} images/s, {ratio:.2f}x 32-true" in out
    assert "(tiny, 64 px, batch 6" in out
