"""The classifiers VEBI explains on the suite's data (spec section 3, Architecture), as plain
``nn.Sequential`` nets with named layers, so that ``ModuleWalk`` replays them for heatmaps.

The LeNet reuses the suite's ``components.lenet.LeNetInstanceEncoder`` layers (the MIL methods'
instance unit is the same conv1-conv2-fc3 stack) and adds the flatten and the class layer fc4;
the an8Flower CNN is VEBI's own, with a stride-2 conv3 on purpose so that the resampling fix is
exercised. AlexNet (torchvision's) stands in for the thesis's VGG-F on CUB (spec section 3,
[SUBST]); its ImageNet weights come only from a local file (the manifest key ``alexnet``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
import torchvision
from torch import nn

from lightning_modules.components.lenet import LeNetInstanceEncoder
from lightning_modules.components.pretrained import resolve_weights

__all__ = ["NetName", "alexnet", "an8flower_cnn", "build_net", "mnist_lenet"]

NetName = Literal["mnist_lenet", "an8flower_cnn", "alexnet"]


def mnist_lenet(num_classes: int = 10) -> nn.Sequential:
    """LeNet for 1x28x28 digits: conv1 1->20 5x5, ReLU, maxpool 2/2, conv2 20->50 5x5, ReLU,
    maxpool 2/2, flatten 800, fc3 800->500, ReLU, fc4 500->num_classes (the class layer)."""
    encoder = LeNetInstanceEncoder(in_channels=1, feature_dim=500)
    conv1, relu1, pool1, conv2, relu2, pool2 = encoder.features
    fc3, relu3 = encoder.fc
    layers = [
        ("conv1", conv1), ("relu1", relu1), ("pool1", pool1),
        ("conv2", conv2), ("relu2", relu2), ("pool2", pool2),
        ("flatten", nn.Flatten(1)), ("fc3", fc3), ("relu3", relu3),
        ("fc4", nn.Linear(encoder.feature_dim, num_classes)),
    ]  # fmt: skip
    return nn.Sequential(OrderedDict(layers))


def an8flower_cnn(num_classes: int, image_size: int = 64) -> nn.Sequential:
    """The an8Flower CNN for 3 x image_size^2 RGB images (image_size divisible by 8):
    conv1 3->32 5x5 p2, ReLU, maxpool 2/2, conv2 32->64 5x5 p2, ReLU, maxpool 2/2,
    conv3 64->64 3x3 stride 2 p1, ReLU, flatten, fc4 64 (image_size/8)^2 -> 256 (4096 at 64 px),
    ReLU, fc5 256->num_classes (the class layer)."""
    if image_size % 8:
        raise ValueError(f"image_size must be divisible by 8, got {image_size}")
    side = image_size // 8
    layers = [
        ("conv1", nn.Conv2d(3, 32, 5, padding=2)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(32, 64, 5, padding=2)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2, 2)),
        ("conv3", nn.Conv2d(64, 64, 3, stride=2, padding=1)), ("relu3", nn.ReLU()),
        ("flatten", nn.Flatten(1)),
        ("fc4", nn.Linear(64 * side * side, 256)), ("relu4", nn.ReLU()),
        ("fc5", nn.Linear(256, num_classes)),
    ]  # fmt: skip
    return nn.Sequential(OrderedDict(layers))


def alexnet(num_classes: int, weights: str | None = None) -> nn.Module:
    """torchvision's AlexNet; ``weights``: a manifest key (``alexnet``) or a path to ImageNet
    weights, loaded before the class layer is replaced for ``num_classes`` (a 1000-class file
    keeps its class layer when ``num_classes`` is 1000)."""
    net = torchvision.models.alexnet(weights=None)
    if weights is not None:
        path = resolve_weights(weights)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if num_classes != net.classifier[-1].out_features:
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return net


def build_net(
    name: NetName, num_classes: int, weights: str | None = None, image_size: int = 64
) -> nn.Module:
    """The net ``name`` for ``num_classes`` classes (``weights`` only for AlexNet;
    ``image_size`` only for the an8Flower CNN, whose fc4 depends on it)."""
    if name == "alexnet":
        return alexnet(num_classes, weights)
    if weights is not None:
        raise ValueError(f"{name} has no pretrained weights; weights={weights!r} must be None")
    if name == "mnist_lenet":
        return mnist_lenet(num_classes)
    if name == "an8flower_cnn":
        return an8flower_cnn(num_classes, image_size)
    raise ValueError(f"unknown net {name!r}; choose mnist_lenet, an8flower_cnn or alexnet")
