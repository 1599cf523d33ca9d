"""The training-throughput clock shared by the benchmarks (``benchmarks/throughput.py``)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.throughput import Clock, batch_size_of


class _Trainer:
    should_stop = False


def _run_epochs(callbacks, epochs: int, batches_per_epoch: int, batch_size: int) -> None:
    trainer = _Trainer()
    batch = {"label": torch.zeros(batch_size), "boxes": torch.zeros(batch_size + 1, 4)}
    for _ in range(epochs):
        for index in range(batches_per_epoch):  # batch_idx restarts every epoch, as in Lightning
            for callback in callbacks:
                callback.on_train_batch_start(trainer, None, batch, index)
            for callback in callbacks:
                callback.on_train_batch_end(trainer, None, None, batch, index)
            if trainer.should_stop:
                return


def test_clock_times_the_batches_after_warmup_across_epochs():
    clock = Clock(warmup=3, steps=5)
    _run_epochs([clock], epochs=5, batches_per_epoch=2, batch_size=6)
    assert clock.batches == 8
    assert clock.images == 5 * 6  # batches 4..8 of 8, over three epochs
    assert clock.end > clock.start > 0
    assert clock.rate == pytest.approx(30 / (clock.end - clock.start))


def test_clock_refuses_a_rate_with_no_timed_batch():
    clock = Clock(warmup=3, steps=5)
    _run_epochs([clock], epochs=1, batches_per_epoch=3, batch_size=6)  # stops short of timing
    with pytest.raises(RuntimeError, match="3 warm-up batches"):
        _ = clock.rate


def test_batch_size_is_the_first_tensor_length():
    assert batch_size_of({"image_id": ["a"], "bag": torch.zeros(3, 7, 1, 28, 28)}) == 3
    with pytest.raises(ValueError, match="no tensor"):
        batch_size_of({"image_id": ["a"]})
    with pytest.raises(ValueError, match="steps >= 1"):
        Clock(warmup=0, steps=0)
