"""The MinMaxCAM throughput benchmark: its clock, its skip without CUDA, and a tiny CPU run."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_minmaxcam
from benchmarks.bench_minmaxcam import _Clock, _StopAfter
from datamodules.synthetic.birds import make_synthetic_cub


class _Trainer:
    should_stop = False


def _run_epochs(callbacks, epochs: int, batches_per_epoch: int, batch_size: int) -> None:
    trainer = _Trainer()
    batch = {"label": torch.zeros(batch_size)}
    for _ in range(epochs):
        for index in range(batches_per_epoch):  # batch_idx restarts every epoch, as in Lightning
            for callback in callbacks:
                callback.on_train_batch_start(trainer, None, batch, index)
            for callback in callbacks:
                callback.on_train_batch_end(trainer, None, None, batch, index)
            if trainer.should_stop:
                return


def test_clock_times_the_batches_after_warmup_across_epochs():
    clock = _Clock(warmup=3)
    _run_epochs([clock, _StopAfter(8)], epochs=5, batches_per_epoch=2, batch_size=6)
    assert clock.batches == 8
    assert clock.images == 5 * 6  # batches 4..8 of 8, over three epochs
    assert clock.end > clock.start > 0
    assert clock.rate == pytest.approx(30 / (clock.end - clock.start))


def test_clock_refuses_a_rate_with_no_timed_batch():
    clock = _Clock(warmup=3)
    _run_epochs([clock], epochs=1, batches_per_epoch=3, batch_size=6)
    with pytest.raises(RuntimeError, match="3 warm-up batches"):
        _ = clock.rate


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
    assert all(rate > 0 for rate in rates.values())
    out = capsys.readouterr().out
    assert "bf16-mixed:" in out and "x 32-true (tiny, 64 px, batch 6" in out
