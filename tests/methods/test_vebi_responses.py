"""VEBI's response vector x and filter ablation, against hand-run forward passes (spec section 3,
"Filter-wise response vector"; section 9: x blocks sum to 1 per layer, conv entries equal the
per-filter L2 norm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from lightning_modules.vebi.ablation import ablated, matched_random_selection
from lightning_modules.vebi.responses import ResponseIndex, find_response_layers, response_vectors


def _lenet() -> nn.Sequential:
    """The spec's MNIST LeNet (m = 20 + 50 + 500 = 570)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(800, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    ).eval()


def _by_hand(net: nn.Sequential, images: torch.Tensor) -> list[np.ndarray]:
    """The post-ReLU outputs of conv1, conv2 and fc3, by running the layers one by one."""
    outputs, h = [], images
    for i, layer in enumerate(net):
        h = layer(h)
        if i in (1, 4, 8):
            outputs.append(h.detach().double().numpy())
    return outputs


def test_the_spec_lenet_reads_its_relus_and_excludes_the_class_layer():
    layers = find_response_layers(_lenet())
    assert [(x.source, x.read, x.kind, x.width) for x in layers] == [
        ("0", "1", "conv", 20),
        ("3", "4", "conv", 50),
        ("7", "8", "fc", 500),
    ]
    index = ResponseIndex(layers)
    assert index.size == 570 and int(index.pool("only_conv").sum()) == 70
    assert index.entry(25) == (layers[1], 5) and index.entry(70) == (layers[2], 0)
    with_pool = find_response_layers(_lenet(), include_pool=True)
    assert [(x.source, x.kind, x.width) for x in with_pool if x.kind == "pool"] == [
        ("2", "pool", 20),
        ("5", "pool", 50),
    ]


def test_x_is_the_per_layer_l1_normalised_filter_norms():
    net, images = _lenet(), torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    x, logits = response_vectors(net, images, ResponseIndex.of(net))
    torch.testing.assert_close(logits, net(images))
    conv1, conv2, fc3 = _by_hand(net, images)
    blocks = [
        np.sqrt((conv1**2).sum(axis=(2, 3))),
        np.sqrt((conv2**2).sum(axis=(2, 3))),
        np.abs(fc3),
    ]
    expected = np.concatenate([b / (b.sum(1, keepdims=True) + 1e-12) for b in blocks], axis=1)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-7)
    for start, stop in ((0, 20), (20, 70), (70, 570)):
        np.testing.assert_allclose(x[:, start:stop].sum(1).numpy(), 1.0, rtol=1e-5)
    assert x.dtype == torch.float32 and (x >= 0).all()


def test_alexnet_layers_are_its_five_convs_and_two_hidden_fcs():
    net = torchvision.models.alexnet(weights=None, num_classes=13).eval()
    layers = find_response_layers(net)
    assert [(x.read, x.kind, x.width) for x in layers] == [
        ("features.1", "conv", 64),
        ("features.4", "conv", 192),
        ("features.7", "conv", 384),
        ("features.9", "conv", 256),
        ("features.11", "conv", 256),
        ("classifier.2", "fc", 4096),
        ("classifier.5", "fc", 4096),
    ]
    x, _ = response_vectors(net, torch.randn(2, 3, 224, 224), ResponseIndex(layers))
    assert x.shape == (2, 64 + 192 + 384 + 256 + 256 + 2 * 4096)


def test_a_net_without_conv_or_hidden_linear_is_refused():
    with pytest.raises(ValueError, match=r"no Conv2d or hidden Linear.*Linear"):
        find_response_layers(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="unknown pool"):
        ResponseIndex.of(_lenet()).pool("conv")


def test_ablation_zeroes_exactly_the_selected_outputs_and_then_leaves_the_net_alone():
    net, images = _lenet(), torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    index = ResponseIndex.of(net)
    selected = torch.zeros(index.size, dtype=torch.bool)
    selected[[3, 7, 20 + 11, 70 + 499]] = True  # conv1 filters 3, 7; conv2 11; fc3 unit 499
    with ablated(net, index, selected):
        logits = net(images)
        x, _ = response_vectors(net, images, index)
    # by hand: zero those channels / units after their ReLU and run the rest
    h = net[1](net[0](images))
    h[:, [3, 7]] = 0
    h = net[4](net[3](net[2](h)))
    h[:, 11] = 0
    h = net[8](net[7](net[6](net[5](h))))
    h[:, 499] = 0
    torch.testing.assert_close(logits, net[9](h))
    assert (x[:, selected] == 0).all()
    torch.testing.assert_close(net(images), _lenet()(images))  # hooks removed
    with ablated(net, index, torch.zeros(index.size, dtype=torch.bool)):
        torch.testing.assert_close(net(images), _lenet()(images))
    with pytest.raises(ValueError, match="bool tensor of shape"):
        with ablated(net, index, selected.float()):
            pass


def test_matched_random_sets_keep_the_per_layer_counts():
    index = ResponseIndex.of(_lenet())
    selected = torch.zeros(index.size, dtype=torch.bool)
    selected[[0, 1, 2, 30, 100, 200, 300, 569]] = True
    draws = [
        matched_random_selection(index, selected, torch.Generator().manual_seed(s))
        for s in range(10)
    ]
    for drawn in draws:
        assert index.counts(drawn) == index.counts(selected) == {"0": 3, "3": 1, "7": 4}
    assert len({tuple(d.nonzero().flatten().tolist()) for d in draws}) == 10
    again = matched_random_selection(index, selected, torch.Generator().manual_seed(0))
    assert torch.equal(again, draws[0])
