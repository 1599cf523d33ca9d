"""lightning_modules.components.began_equilibrium: BEGAN's k_t update and convergence measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.components.adversarial_losses import began_discriminator_loss
from lightning_modules.components.began_equilibrium import BEGANEquilibrium


def _close(value: torch.Tensor, expected: float) -> None:
    torch.testing.assert_close(value, torch.tensor(expected), rtol=1e-5, atol=0.0)


def _update(control: BEGANEquilibrium, loss_real: float, loss_fake: float) -> torch.Tensor:
    return control.update(torch.tensor(loss_real), torch.tensor(loss_fake))


def test_worked_updates():
    control = BEGANEquilibrium(gamma=0.5, lambda_k=0.001)
    assert float(control.k) == 0.0
    # L(x) = 0.4, L(G(z)) = 0.1: balance 0.5 * 0.4 - 0.1 = 0.1; k = 0 + 0.001 * 0.1 = 1e-4;
    # M = 0.4 + |0.1| = 0.5
    _close(_update(control, 0.4, 0.1), 0.5)
    _close(control.k, 1e-4)
    # L(x) = 0.6, L(G(z)) = 0.1: balance 0.2; k = 1e-4 + 2e-4 = 3e-4; M = 0.6 + 0.2 = 0.8
    _close(_update(control, 0.6, 0.1), 0.8)
    _close(control.k, 3e-4)
    # L(x) = 0.2, L(G(z)) = 0.3: balance -0.2; k = 3e-4 - 2e-4 = 1e-4; M = 0.2 + 0.2 = 0.4
    _close(_update(control, 0.2, 0.3), 0.4)
    _close(control.k, 1e-4)


def test_k_is_clipped_to_the_unit_interval_from_both_sides():
    # from above: 0.9 + 0.5 * (1 * 1.0 - 0.6) = 1.1 -> 1; M = 1 + 0.4 = 1.4
    high = BEGANEquilibrium(gamma=1.0, lambda_k=0.5, k_init=0.9)
    _close(_update(high, 1.0, 0.6), 1.4)
    assert float(high.k) == 1.0
    # from below: 0.1 + 1 * (0.5 * 0.2 - 0.6) = -0.4 -> 0; M = 0.2 + 0.5 = 0.7
    low = BEGANEquilibrium(gamma=0.5, lambda_k=1.0, k_init=0.1)
    _close(_update(low, 0.2, 0.6), 0.7)
    assert float(low.k) == 0.0
    # and it moves off the bound again when the sign of the balance turns
    _update(low, 1.0, 0.0)  # 0 + 1 * 0.5 = 0.5
    _close(low.k, 0.5)


def test_trajectory_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.0, 1.0, (200, 2))
    gamma, lambda_k = 0.7, 0.05
    control = BEGANEquilibrium(gamma=gamma, lambda_k=lambda_k, k_init=0.3)
    k = 0.3
    for loss_real, loss_fake in losses:
        measure = control.update(torch.tensor(loss_real), torch.tensor(loss_fake))
        balance = gamma * loss_real - loss_fake
        k = min(max(k + lambda_k * balance, 0.0), 1.0)
        assert math.isclose(float(control.k), k, abs_tol=1e-6)
        assert math.isclose(float(measure), loss_real + abs(balance), rel_tol=1e-12)


def test_k_is_a_checkpointed_buffer():
    control = BEGANEquilibrium(k_init=0.25)
    assert [name for name, _ in control.named_buffers()] == ["k"]
    assert list(control.parameters()) == []
    restored = BEGANEquilibrium()
    restored.load_state_dict(control.state_dict())
    assert float(restored.k) == 0.25
    assert control.to(torch.float64).k.dtype == torch.float64  # follows .to()


def test_no_gradient_flows_into_k_or_the_measure():
    control = BEGANEquilibrium(gamma=0.5, lambda_k=0.1)
    loss_real = torch.tensor(0.4, requires_grad=True)
    loss_fake = torch.tensor(0.1, requires_grad=True)
    loss_d = began_discriminator_loss(loss_real, loss_fake, control.k)
    measure = control.update(loss_real * 1.0, loss_fake * 1.0)
    assert not control.k.requires_grad and control.k.grad_fn is None
    assert not measure.requires_grad
    # the in-place update came before loss_d's backward, which still runs with the old k = 0
    loss_d.backward()
    torch.testing.assert_close(loss_real.grad, torch.tensor(1.0))
    torch.testing.assert_close(loss_fake.grad, torch.tensor(-0.0))
    _close(control.k, 0.01)  # 0 + 0.1 * (0.2 - 0.1)


def test_update_needs_no_host_values():
    # meta tensors have no data: .item(), float() or a Python comparison on them would raise
    control = BEGANEquilibrium(k_init=0.5).to("meta")
    measure = control.update(torch.tensor(0.4, device="meta"), torch.tensor(0.1, device="meta"))
    assert measure.device.type == "meta" and control.k.device.type == "meta"


def test_update_refuses_non_scalar_losses():
    with pytest.raises(ValueError, match=r"must be scalars, got shapes \(2,\) and \(\)"):
        BEGANEquilibrium().update(torch.zeros(2), torch.tensor(0.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": 0.0}, r"gamma must be in \(0, 1\], got 0.0"),
        ({"gamma": 1.5}, "gamma must be in"),
        ({"gamma": math.nan}, "gamma must be in"),
        ({"lambda_k": 0.0}, "lambda_k must be > 0, got 0.0"),
        ({"lambda_k": -1e-3}, "lambda_k must be > 0"),
        ({"k_init": -0.1}, r"k_init must be in \[0, 1\], got -0.1"),
        ({"k_init": 1.1}, "k_init must be in"),
    ],
)
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BEGANEquilibrium(**kwargs)
