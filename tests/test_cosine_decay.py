"""components.cosine_decay: the per-step cosine to zero over the run's optimizer steps."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from lightning_modules.components.cosine_decay import cosine_decay


def _run(steps: float, lr: float = 0.2) -> tuple[torch.optim.Optimizer, dict]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return optimizer, cosine_decay(optimizer, SimpleNamespace(estimated_stepping_batches=steps))


def test_the_rate_follows_half_a_cosine_to_zero_stepped_per_batch():
    optimizer, config = _run(8)
    assert config["optimizer"] is optimizer
    assert config["lr_scheduler"]["interval"] == "step"
    scheduler = config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.1 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    assert rates == pytest.approx(expected)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("steps", [math.inf, 0])
def test_a_run_without_a_finite_length_is_refused(steps):
    with pytest.raises(ValueError, match="max_epochs or trainer.max_steps"):
        _run(steps)
