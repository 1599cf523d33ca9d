"""The hallucination networks (``lightning_modules.exemplar_sr``) and their shared pieces
(``components.equalized``, ``components.minibatch_stddev``): the spec's CPU unit tests of section 9
on narrow widths. W is a partition of unity at both scales; permuting the exemplars permutes W and
leaves I_SR unchanged; m = 0 and ``average`` fusion; 128 px from 16 px (x8) and 8 px (x16); each
loss bracket reaches only its own networks; equalized layers' runtime scale and minibatch stddev
against hand computations; the critic's shape and its gradient penalty. (The penalty's exact
value on a linear critic is checked in tests/test_adversarial_losses.py.)
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_modules.components.adversarial_losses import gradient_penalty
from lightning_modules.components.equalized import EqualizedConv2d, EqualizedLinear
from lightning_modules.components.minibatch_stddev import minibatch_stddev
from lightning_modules.exemplar_sr import (
    DownBlock,
    ExemplarSRCritic,
    ExemplarSRGenerator,
    weight_entropy,
)

TINY = {
    "isr_widths": (16, 8, 8, 8),
    "encoder_widths": (8, 16, 16, 16),
    "encoder_stem_channels": 4,
    "feature_channels": 8,
    "wnn_channels": 8,
    "small_channels": 8,
}
HR = 128
B, M = 2, 3


def _generator(num_up_blocks: int = 3, **kwargs) -> ExemplarSRGenerator:
    torch.manual_seed(0)
    return ExemplarSRGenerator(num_up_blocks=num_up_blocks, **TINY, **kwargs)


def _inputs(h_lr: int = 16, m: int = M, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(B, 3, h_lr, h_lr, generator=g) * 2 - 1
    exemplars = torch.rand(B, m, 3, HR, HR, generator=g) * 2 - 1
    return lr, exemplars


@pytest.mark.parametrize(("num_up_blocks", "h_lr"), [(3, 16), (4, 8)], ids=["x8", "x16"])
def test_weights_are_non_negative_and_sum_to_one_at_both_scales(num_up_blocks, h_lr):
    g = _generator(num_up_blocks)
    lr, exemplars = _inputs(h_lr)
    sr, aux = g(lr, exemplars)
    assert sr.shape == (B, 3, HR, HR) and torch.isfinite(sr).all()
    assert aux["lr_prime"].shape == (B, 3, 2 * h_lr, 2 * h_lr)
    for weights, side in zip(aux["weights"], (h_lr, 2 * h_lr), strict=True):
        assert weights.shape == (B, M, 1, side, side)
        assert (weights >= 0).all()
        assert (weights.sum(dim=1) - 1).abs().max() <= 1e-5
    assert 0 <= aux["weight_entropy"] <= math.log(M) + 1e-6


def test_permuting_the_exemplars_permutes_w_and_keeps_the_output():
    g = _generator()
    lr, exemplars = _inputs()
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        sr, aux = g(lr, exemplars)
        sr_p, aux_p = g(lr, exemplars[:, perm])
    torch.testing.assert_close(sr_p, sr, atol=1e-5, rtol=0)
    for w, w_p in zip(aux["weights"], aux_p["weights"], strict=True):
        torch.testing.assert_close(w_p, w[:, perm], atol=1e-6, rtol=0)
    assert not torch.allclose(aux["weights"][0][:, 0], aux["weights"][0][:, 1])  # W varies


def test_m0_runs_without_the_exemplar_branch():
    g = _generator()
    lr, exemplars = _inputs(m=0)
    sr, aux = g(lr, exemplars)
    sr_none, _ = g(lr, None)
    torch.testing.assert_close(sr_none, sr, atol=0, rtol=0)
    assert [w.shape for w in aux["weights"]] == [(B, 0, 1, 16, 16), (B, 0, 1, 32, 32)]
    assert aux["weight_entropy"] == 0
    # zero fused features at both scales
    zeros_1, zeros_2 = torch.zeros(B, 8, 16, 16), torch.zeros(B, 8, 32, 32)
    torch.testing.assert_close(sr, g.isr(lr, zeros_1, zeros_2), atol=0, rtol=0)
    sr.square().mean().backward()
    assert all(p.grad is None for p in g.encoder.parameters())
    # exemplars do change the output when there are some
    assert not torch.allclose(g(lr, _inputs()[1])[0], sr)


def test_bicubic_skip_adds_the_bicubic_upsample_to_the_trunk():
    torch.manual_seed(0)
    plain, skip = _generator(), _generator(bicubic_skip=True)
    skip.load_state_dict(plain.state_dict())
    lr, exemplars = _inputs()
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=8, mode="bicubic")
    torch.testing.assert_close(skip(lr, exemplars)[0], plain(lr, exemplars)[0] + bicubic)


def test_average_fusion_weighs_every_exemplar_one_over_m():
    g = _generator(fusion="average")
    assert g.parameter_groups()["wnn"] == []
    lr, exemplars = _inputs()
    with torch.no_grad():
        sr, aux = g(lr, exemplars)
        f_1, f_2 = g.encoder(exemplars)
        expected = g.isr(lr, f_1.mean(dim=1), f_2.mean(dim=1))
    for w in aux["weights"]:
        torch.testing.assert_close(w, torch.full_like(w, 1 / M))
    torch.testing.assert_close(sr, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(aux["weight_entropy"], torch.tensor(math.log(M)))


def test_weight_entropy_hand_values():
    w = torch.tensor([0.5, 0.5, 0.0]).reshape(1, 3, 1, 1, 1)
    torch.testing.assert_close(weight_entropy(w), torch.tensor(math.log(2)))
    torch.testing.assert_close(weight_entropy(torch.ones(2, 1, 1, 4, 4)), torch.tensor(0.0))


def _with_grad(params) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


def test_each_loss_bracket_reaches_only_its_own_networks():
    g = _generator()
    groups = g.parameter_groups()
    lr, exemplars = _inputs()
    sr, aux = g(lr, exemplars)
    # first bracket (Eqs. 6.1, 6.3, 6.5 on I_SR): main and WNNs, never G_S (WNN-2 reads I'_LR
    # detached)
    sr.square().mean().backward()
    assert all(_with_grad(groups["main"])) and all(_with_grad(groups["wnn"]))
    assert all(p.grad is None for p in groups["small"])
    g.zero_grad(set_to_none=True)
    # second bracket (Eqs. 6.2, 6.4 on I'_LR): G_S only
    _, aux = g(lr, exemplars)
    aux["lr_prime"].square().mean().backward()
    assert all(_with_grad(groups["small"]))
    assert all(p.grad is None for p in groups["main"] + groups["wnn"])


def test_parameter_groups_partition_the_generator():
    g = _generator()
    groups = g.parameter_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids)) == len(list(g.parameters()))
    assert {id(p) for p in g.isr.parameters()} <= set(map(id, groups["main"]))
    assert {id(p) for p in g.pwave.parameters()} == set(map(id, groups["wnn"]))


def test_mismatched_exemplars_are_refused():
    g = _generator()
    lr, _ = _inputs()
    with pytest.raises(ValueError, match="exemplars must be"):
        g(lr, torch.zeros(B, M, 3, 64, 64))


def test_every_layer_is_equalized_or_plain_by_the_switch():
    for equalized in (True, False):
        g = _generator(equalized_lr=equalized)
        critic = ExemplarSRCritic(32, widths=(8, 16), equalized_lr=equalized)
        for net in (g, critic):
            layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
            assert layers and all(isinstance(m, EqualizedConv2d | EqualizedLinear) for m in layers)
            assert all((m.weight_scale != 1.0) == equalized for m in layers)


def test_equalized_layers_scale_their_weights_at_run_time():
    # Conv 2 -> 3, 3x3: fan_in = 18, c = sqrt(2) / sqrt(18) = 1/3; weights of ones on an input of
    # ones give 18 * 1/3 = 6 at every interior pixel (plain layer: 18)
    conv = EqualizedConv2d(2, 3, 3)
    assert conv.weight_scale == pytest.approx(1 / 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    out = conv(torch.ones(1, 2, 5, 5))
    torch.testing.assert_close(out[0, :, 1:-1, 1:-1], torch.full((3, 3, 3), 6.0))
    torch.testing.assert_close(conv.effective_weight, torch.full((3, 2, 3, 3), 1 / 3))
    # the stored weight's gradient carries the scale: d out / d w = c * x
    conv.weight.grad = None
    conv(torch.ones(1, 2, 3, 3))[0, 0, 1, 1].backward()
    torch.testing.assert_close(conv.weight.grad[0], torch.full((2, 3, 3), 1 / 3))
    plain = EqualizedConv2d(2, 3, 3, equalized_lr=False)
    with torch.no_grad():
        plain.weight.fill_(1.0)
    assert plain.weight_scale == 1.0
    torch.testing.assert_close(plain(torch.ones(1, 2, 5, 5))[0, :, 2, 2], torch.full((3,), 18.0))
    # Linear 4 -> 2 with gain 1: c = 1/2; ones -> 4 * 1/2 = 2
    linear = EqualizedLinear(4, 2, gain=1.0)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    torch.testing.assert_close(linear(torch.ones(1, 4)), torch.full((1, 2), 2.0))


def test_equalized_and_plain_initialisation():
    torch.manual_seed(0)
    eq, plain = EqualizedLinear(512, 256), EqualizedLinear(512, 256, equalized_lr=False)
    std = math.sqrt(2 / 512)
    assert eq.weight.std().item() == pytest.approx(1.0, rel=0.02)
    assert eq.effective_weight.std().item() == pytest.approx(std, rel=0.02)
    assert plain.weight.std().item() == pytest.approx(std, rel=0.02)
    assert eq.bias.abs().sum() == 0 and plain.bias.abs().sum() == 0


def test_minibatch_stddev_hand_values():
    # B = 4, one group of 4; C = 1, 1 x 2 pixels. Pixel a: [0, 0, 0, 4], mean 1, biased variance
    # (1 + 1 + 1 + 9) / 4 = 3; pixel b: [1, 1, 1, 1], variance 0 -> sqrt(1e-8) = 1e-4.
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [4.0, 1.0]]).reshape(4, 1, 1, 2)
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (4, 2, 1, 2)
    torch.testing.assert_close(y[:, :1], x)
    expected = (math.sqrt(3 + 1e-8) + 1e-4) / 2
    torch.testing.assert_close(y[:, 1], torch.full((4, 1, 2), expected))


def test_minibatch_stddev_groups_like_the_reference():
    # B = 8, groups of 4: sample i is in group i mod 2. Even samples equal (stddev ~ 1e-4), odd
    # samples 0, 2, 0, 2 (stddev 1).
    x = torch.zeros(8, 1, 2, 2)
    x[1::2] = torch.tensor([0.0, 2.0, 0.0, 2.0]).reshape(4, 1, 1, 1)
    y = minibatch_stddev(x)[:, 1]
    torch.testing.assert_close(y[0::2], torch.full((4, 2, 2), 1e-4))
    torch.testing.assert_close(y[1::2], torch.full((4, 2, 2), 1.0))
    # a batch smaller than the group is one group: [0, 2] has stddev 1
    y2 = minibatch_stddev(torch.tensor([0.0, 2.0]).reshape(2, 1, 1, 1))[:, 1]
    torch.testing.assert_close(y2, torch.ones(2, 1, 1))
    with pytest.raises(ValueError, match="not divisible"):
        minibatch_stddev(torch.zeros(6, 1, 2, 2))


@pytest.mark.parametrize(("size", "blocks"), [(128, 5), (32, 3)])
def test_critic_scores_each_image(size, blocks):
    torch.manual_seed(0)
    critic = ExemplarSRCritic(size, widths=(8, 16))
    assert sum(isinstance(m, DownBlock) for m in critic.modules()) == blocks
    images = torch.randn(4, 3, size, size)
    scores = critic(images)
    assert scores.shape == (4,) and torch.isfinite(scores).all()


def test_critic_gradient_penalty_reaches_every_critic_parameter():
    torch.manual_seed(0)
    critic = ExemplarSRCritic(32, widths=(8, 16))
    real, fake = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32, requires_grad=True)
    penalty = gradient_penalty(critic, real, fake)
    assert torch.isfinite(penalty) and penalty >= 0
    penalty.backward()
    # the score's bias does not change the input gradient; every other parameter does
    final_bias = critic.head[-1].bias
    assert all(p.grad is not None for p in critic.parameters() if p is not final_bias)
    assert fake.grad is None  # the penalty trains only the critic


def test_wnn2_reads_the_small_generators_output():
    # the spec's acceptance: WNN-2 is conditioned on G_S's I'_LR, WNN-1 on I_LR only
    g = _generator()
    lr, exemplars = _inputs()
    with torch.no_grad():
        _, aux = g(lr, exemplars)
        g.small_generator[-1].bias.add_(0.5)  # another I'_LR
        _, aux_moved = g(lr, exemplars)
    torch.testing.assert_close(aux_moved["weights"][0], aux["weights"][0], atol=0, rtol=0)
    assert not torch.allclose(aux_moved["weights"][1], aux["weights"][1])


@pytest.mark.parametrize(("num_up_blocks", "h_lr"), [(3, 16), (4, 8)], ids=["x8", "x16"])
def test_spec_default_widths_give_128_px(num_up_blocks, h_lr):
    torch.manual_seed(0)
    g = ExemplarSRGenerator(num_up_blocks=num_up_blocks)  # widths 256..32, K = 128
    assert g.feature_channels == 128 and g.isr.to_rgb.in_channels == 32 * 2 ** (4 - num_up_blocks)
    with torch.no_grad():
        sr, aux = g(torch.randn(1, 3, h_lr, h_lr), torch.randn(1, 2, 3, HR, HR))
    assert sr.shape == (1, 3, HR, HR) and torch.isfinite(sr).all()
    assert [w.shape[-1] for w in aux["weights"]] == [h_lr, 2 * h_lr]
