"""lightning_modules.components.adversarial_losses: hand-worked values and a numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.components.adversarial_losses import (
    bce_discriminator_loss,
    bce_fake_loss,
    bce_generator_loss,
    bce_real_loss,
    began_discriminator_loss,
    began_reconstruction_loss,
    drift_penalty,
    gradient_penalty,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    wgan_critic_loss,
    wgan_generator_loss,
)

LOG2 = math.log(2.0)


def _close(value: torch.Tensor, expected: float) -> None:
    """A scalar ``value`` equal to ``expected`` to its dtype's precision."""
    assert value.dim() == 0
    rtol, atol = (1e-12, 1e-12) if value.dtype == torch.float64 else (1e-6, 1e-7)
    torch.testing.assert_close(
        value.double(), torch.tensor(expected, dtype=torch.float64), rtol=rtol, atol=atol
    )


# --- non-saturating BCE ---------------------------------------------------------------------


def test_bce_at_zero_logits_is_log_two_per_term():
    # sigmoid(0) = 1/2: -log(1/2) = log 2 for real and fake alike
    zeros = torch.zeros(4, 1)
    _close(bce_real_loss(zeros), LOG2)
    _close(bce_fake_loss(zeros), LOG2)
    _close(bce_discriminator_loss(zeros, zeros), 2 * LOG2)
    _close(bce_generator_loss(zeros), LOG2)


def test_bce_hand_worked_logits():
    # logits [0, log 3]: sigmoid = [1/2, 3/4]
    # real: mean(-log 1/2, -log 3/4) = (log 2 + log 4/3) / 2 = log(8/3) / 2
    # fake: mean(-log 1/2, -log 1/4) = (log 2 + log 4) / 2 = 1.5 log 2
    logits = torch.tensor([0.0, math.log(3.0)])
    _close(bce_real_loss(logits), math.log(8 / 3) / 2)
    _close(bce_fake_loss(logits), 1.5 * LOG2)
    _close(bce_generator_loss(logits), math.log(8 / 3) / 2)
    # D on real [log 3] and fake [0]: -log 3/4 - log 1/2 = log 4/3 + log 2 = log 8/3
    _close(bce_discriminator_loss(torch.tensor([math.log(3.0)]), torch.zeros(1)), math.log(8 / 3))


def test_bce_is_stable_at_large_logits():
    # l = +100: sigmoid = 1 - e^-100, so the real loss -> 0 and the fake loss -> 100;
    # l = -100: the real loss -> 100 and the fake loss -> 0. Gradients are -1 / +1 / 0, finite.
    big = torch.tensor([100.0], requires_grad=True)
    small = torch.tensor([-100.0], requires_grad=True)
    for loss, expected in [
        (bce_real_loss(big), 0.0),
        (bce_fake_loss(big), 100.0),
        (bce_real_loss(small), 100.0),
        (bce_fake_loss(small), 0.0),
    ]:
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)
    (bce_fake_loss(big) + bce_real_loss(small)).backward()
    torch.testing.assert_close(big.grad, torch.tensor([1.0]))  # d softplus(l) at 100
    torch.testing.assert_close(small.grad, torch.tensor([-1.0]))  # d softplus(-l) at -100


def test_bce_multi_scale_is_the_mean_of_the_scales():
    # scale 1: four zero logits -> log 2; scale 2: one logit log 3 -> -log 3/4 = log 4/3.
    # Mean over scales (log 2 + log 4/3) / 2, not the pooled mean (4 log 2 + log 4/3) / 5.
    scales = [torch.zeros(1, 1, 2, 2), torch.full((1, 1, 1, 1), math.log(3.0))]
    _close(bce_real_loss(scales), (LOG2 + math.log(4 / 3)) / 2)
    _close(bce_generator_loss(scales), (LOG2 + math.log(4 / 3)) / 2)
    # fake terms: log 2 and -log 1/4 = log 4
    _close(bce_fake_loss(scales), (LOG2 + math.log(4.0)) / 2)
    _close(bce_discriminator_loss(scales, scales), (LOG2 + math.log(4 / 3) + LOG2 + 2 * LOG2) / 2)


# --- LSGAN ----------------------------------------------------------------------------------


def test_lsgan_hand_worked_values():
    # D on real [1, 0], fake [1, 0]: 1/2 mean(0, 1) + 1/2 mean(1, 0) = 1/4 + 1/4 = 1/2
    # G on fake [1, 0]: 1/2 mean(0, 1) = 1/4
    outputs = torch.tensor([1.0, 0.0])
    _close(lsgan_discriminator_loss(outputs, outputs), 0.5)
    _close(lsgan_generator_loss(outputs), 0.25)
    # a perfect D (real -> 1, fake -> 0) has loss 0; the G of those fakes 1/2 mean(1, 1) = 1/2
    _close(lsgan_discriminator_loss(torch.ones(3), torch.zeros(3)), 0.0)
    _close(lsgan_generator_loss(torch.zeros(3)), 0.5)


def test_lsgan_targets():
    # Mao et al.'s a = -1, b = 1, c = 0 on real [1, 0], fake [1, 0]:
    # D: 1/2 mean(0, 1) + 1/2 mean((1+1)^2, (0+1)^2) = 1/4 + 1/2 * 5/2 = 1.5
    # G: 1/2 mean((1-0)^2, 0) = 1/4
    outputs = torch.tensor([1.0, 0.0])
    _close(lsgan_discriminator_loss(outputs, outputs, real_target=1.0, fake_target=-1.0), 1.5)
    _close(lsgan_generator_loss(outputs, target=0.0), 0.25)


def test_lsgan_multi_scale_is_the_mean_of_the_scales():
    # scale 1 (2x2): real all 1, fake all 1 -> 0 + 1/2 = 1/2; G -> 0
    # scale 2 (1x1): real 0, fake 0 -> 1/2 + 0 = 1/2; G -> 1/2
    # scale 3 (1x2): real [1, 0], fake [1, 0] -> 1/2 (as above); G -> 1/4
    real = [torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 1, 1), torch.tensor([[[[1.0, 0.0]]]])]
    fake = [torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 1, 1), torch.tensor([[[[1.0, 0.0]]]])]
    _close(lsgan_discriminator_loss(real, fake), 0.5)
    _close(lsgan_generator_loss(fake), (0.0 + 0.5 + 0.25) / 3)
    _close(lsgan_generator_loss(tuple(fake)), (0.0 + 0.5 + 0.25) / 3)


def test_multi_scale_inputs_must_match():
    one = torch.zeros(2)
    with pytest.raises(ValueError, match="real has 2 scales but fake has 1"):
        lsgan_discriminator_loss([one, one], [one])
    with pytest.raises(ValueError, match="both be tensors or both be sequences"):
        lsgan_discriminator_loss(one, [one])
    with pytest.raises(ValueError, match="empty sequence"):
        lsgan_generator_loss([])
    with pytest.raises(ValueError, match="real has 1 scales but fake has 2"):
        bce_discriminator_loss([one], [one, one])


# --- WGAN-GP --------------------------------------------------------------------------------


def test_wgan_hand_worked_values():
    # real [1, 2, 3] (mean 2), fake [0, 1] (mean 1/2): critic 1/2 - 2 = -1.5, generator -1/2
    real, fake = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[0.0], [1.0]])
    _close(wgan_critic_loss(real, fake), -1.5)
    _close(wgan_generator_loss(fake), -0.5)
    # drift: mean(1^2, (-2)^2) = 5/2
    _close(drift_penalty(torch.tensor([1.0, -2.0])), 2.5)


def _linear_critic(weight: torch.Tensor):
    """D(x) = <w, x> per sample: its input gradient is w everywhere."""
    return lambda x: (x * weight).flatten(1).sum(1)  # (B,)


def test_gradient_penalty_of_a_linear_critic_is_exact():
    # w = [[3, 0], [0, 4]]: ||grad|| = ||w|| = 5 at every x_hat, so the penalty is (5 - 1)^2 = 16;
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 8/5 w = [[4.8, 0], [0, 6.4]]
    weight = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]], requires_grad=True)  # (1, 2, 2)
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    penalty = gradient_penalty(_linear_critic(weight), real, fake)
    _close(penalty, 16.0)
    penalty.backward()
    torch.testing.assert_close(weight.grad, torch.tensor([[[4.8, 0.0], [0.0, 6.4]]]))


def test_gradient_penalty_trains_the_critic_not_the_generator():
    # D(x) = w/2 ||x||^2 has input gradient w x: the penalty depends on x_hat, hence on the
    # fakes and reals, yet its backward must stop at them (they enter detached).
    producer = torch.tensor(2.0, requires_grad=True)  # stands for the generator's parameters
    data_scale = torch.tensor(1.0, requires_grad=True)  # something that produced the reals
    weight = torch.tensor(0.5, requires_grad=True)
    fake = producer * torch.ones(3, 1, 2)
    real = data_scale * torch.full((3, 1, 2), 3.0)

    def critic(x: torch.Tensor) -> torch.Tensor:
        return weight * 0.5 * x.square().flatten(1).sum(1)

    gradient_penalty(critic, real, fake).backward()
    assert weight.grad is not None and weight.grad != 0
    assert producer.grad is None
    assert data_scale.grad is None


def test_gradient_penalty_draws_one_eps_per_sample():
    # A quadratic critic D(x) = 1/2 ||x||^2 has gradient x. With real = ones (n = 6 elements)
    # and fake = zeros, x_hat_i = eps_i * ones, so ||grad_i|| = eps_i sqrt(6) and the penalty is
    # mean_i (eps_i sqrt(6) - 1)^2, with eps the seeded generator's first B uniform draws.
    seen = []

    def critic(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach())
        return 0.5 * x.square().flatten(1).sum(1)

    real, fake = torch.ones(4, 1, 2, 3, dtype=torch.float64), torch.zeros(4, 1, 2, 3)
    fake = fake.double()
    penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    eps = torch.rand(4, generator=torch.Generator().manual_seed(7), dtype=torch.float64).numpy()
    (x_hat,) = seen
    assert x_hat.dtype == torch.float64
    for i in range(4):  # each sample is constant, at its own eps
        np.testing.assert_allclose(x_hat[i].numpy(), np.full((1, 2, 3), eps[i]))
    assert len(set(eps.tolist())) == 4
    _close(penalty, float(np.mean((eps * np.sqrt(6.0) - 1.0) ** 2)))


def test_gradient_penalty_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match=r"real \(2, 3\) and fake \(2, 4\) differ"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least one non-batch dimension"):
        gradient_penalty(lambda x: x, torch.zeros(2), torch.zeros(2))


# --- BEGAN ----------------------------------------------------------------------------------


def test_began_hand_worked_values():
    # |[0, 1] - [0.5, 0.5]| = [0.5, 0.5]: mean 0.5
    _close(began_reconstruction_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]])), 0.5)
    # L(x) = 0.4, L(G(z)) = 0.3, k = 0.5: 0.4 - 0.15 = 0.25
    loss_real, loss_fake = torch.tensor(0.4), torch.tensor(0.3)
    _close(began_discriminator_loss(loss_real, loss_fake, 0.5), 0.25)
    _close(began_discriminator_loss(loss_real, loss_fake, torch.tensor(0.5)), 0.25)


def test_began_discriminator_loss_sends_no_gradient_into_k():
    k = torch.tensor(0.5, requires_grad=True)
    loss_fake = torch.tensor(0.3, requires_grad=True)
    began_discriminator_loss(torch.tensor(0.4), loss_fake, k).backward()
    assert k.grad is None
    torch.testing.assert_close(loss_fake.grad, torch.tensor(-0.5))  # d/dL(G(z)) = -k


def test_began_reconstruction_loss_refuses_broadcasting():
    with pytest.raises(ValueError, match="differ in shape"):
        began_reconstruction_loss(torch.zeros(2, 3, 4, 4), torch.zeros(1, 3, 4, 4))


# --- numpy reference over seeded random inputs ----------------------------------------------


def _np_softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_match_a_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(0, 3, (8, 1, 4, 4)), rng.normal(0, 3, (8, 1, 4, 4))
    images, recon = rng.uniform(-1, 1, (4, 3, 8, 8)), rng.uniform(-1, 1, (4, 3, 8, 8))
    t = {name: torch.from_numpy(a) for name, a in dict(r=real, f=fake, x=images, d=recon).items()}
    # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l)
    real_bce, fake_bce = _np_softplus(-real).mean(), _np_softplus(fake).mean()
    _close(bce_real_loss(t["r"]), real_bce)
    _close(bce_fake_loss(t["f"]), fake_bce)
    _close(bce_discriminator_loss(t["r"], t["f"]), real_bce + fake_bce)
    _close(bce_generator_loss(t["f"]), _np_softplus(-fake).mean())
    lsgan_d = 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()
    _close(lsgan_discriminator_loss(t["r"], t["f"]), lsgan_d)
    _close(lsgan_generator_loss(t["f"]), 0.5 * ((fake - 1) ** 2).mean())
    _close(wgan_critic_loss(t["r"], t["f"]), fake.mean() - real.mean())
    _close(wgan_generator_loss(t["f"]), -fake.mean())
    _close(drift_penalty(t["r"]), (real**2).mean())
    _close(began_reconstruction_loss(t["x"], t["d"]), np.abs(images - recon).mean())
    # two scales of different sizes: the mean of per-scale losses
    small_r, small_f = real[:, :, :2, :2], fake[:, :, :2, :2]
    per_scale = [
        0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean()
        for r, f in [(real, fake), (small_r, small_f)]
    ]
    scales_r, scales_f = [t["r"], t["r"][:, :, :2, :2]], [t["f"], t["f"][:, :, :2, :2]]
    _close(lsgan_discriminator_loss(scales_r, scales_f), float(np.mean(per_scale)))
    _close(bce_real_loss(scales_r), (real_bce + _np_softplus(-small_r).mean()) / 2)
