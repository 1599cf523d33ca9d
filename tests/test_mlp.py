"""components.mlp.MLP: the layer plan (Phi of the disentangled AAE), gradients, dropout, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.components.mlp import MLP


def test_phi_layer_plan():
    phi = MLP(99, (1000, 1000), 99)
    linears = [m for m in phi if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (99, 1000),
        (1000, 1000),
        (1000, 99),
    ]
    assert [type(m) for m in phi] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in phi)
    assert (
        sum(p.numel() for p in phi.parameters())
        == 99 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 * 99 + 99
    )


def test_output_is_linear_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = MLP(4, (8,), 3)
    out = net(torch.randn(16, 4))
    assert out.shape == (16, 3) and (out < 0).any()  # no final activation
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_dropout_only_in_training_and_empty_hidden_is_linear():
    net = MLP(4, (64, 64), 2, dropout=0.5).eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(net(x), net(x))
    assert sum(isinstance(m, nn.Dropout) for m in net) == 2
    linear = MLP(4, (), 2)
    assert len(linear) == 1 and isinstance(linear[0], nn.Linear)


@pytest.mark.parametrize(
    ("args", "match"), [((0, (4,), 2), "width"), ((4, (4,), 2, 1.0), "dropout")]
)
def test_bad_settings(args, match):
    with pytest.raises(ValueError, match=match):
        MLP(*args)
