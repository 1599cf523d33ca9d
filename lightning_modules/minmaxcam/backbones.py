"""CAM backbones (everything before global average pooling) with the WSOL stride changes.

- ``vgg16``: torchvision VGG16 ``features`` without the last max-pool, then ``conv6`` =
  Conv2d(512, 1024, 3, padding 1) + ReLU (wsolevaluation ``vgg.py``); 14 x 14 x 1024 at 224 px.
- ``resnet50``: conv1 ... layer4 with stride 1 in ``layer3[0].conv2``, ``layer3[0].downsample[0]``,
  ``layer4[0].conv2`` and ``layer4[0].downsample[0]`` (output stride 8, no dilation);
  28 x 28 x 2048 at 224 px.
- ``mobilenet_v2``: ``features`` with stride 1 in the depthwise convs of ``features[7]`` and
  ``features[14]``; 28 x 28 x 1280 at 224 px.
- ``mobilenet_v1``: timm ``mobilenetv1_100`` (thesis Table 5.3) with stride 1 in the depthwise
  convs of ``blocks[3][0]`` and ``blocks[4][0]`` (the last two stride-2 steps; the spec's proposal,
  the thesis gives no details); 28 x 28 x 1024 at 224 px.
- ``tiny``: a 4-stage conv-BN-ReLU net (output stride 8, widths ``width * (1, 2, 4, 8)``) for
  CPU tests and the synthetic configs; not in the paper.

The surgery changes strides only, so parameter names and shapes equal the unmodified torchvision
(timm for ``mobilenet_v1``) models (minus the classifier head) and ImageNet weights load strictly
from a local file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models

from lightning_modules.components.weights import load_local_weights

BACKBONES = ("vgg16", "resnet50", "mobilenet_v2", "mobilenet_v1", "tiny")


class VGG16CAM(nn.Module):
    """VGG16 features minus the last pool, plus conv6 (part of the backbone, as [WSOL])."""

    def __init__(self) -> None:
        super().__init__()
        self.features = models.vgg16(weights=None).features[:-1]
        self.conv6 = nn.Sequential(nn.Conv2d(512, 1024, 3, padding=1), nn.ReLU(inplace=True))
        self.out_channels = 1024

    def forward(
        self, images: torch.Tensor
    ) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1024, H/16, W/16)
        return self.conv6(self.features(images))


class ResNet50CAM(nn.Module):
    """ResNet-50 trunk (same attribute names as torchvision) at output stride 8."""

    def __init__(self) -> None:
        super().__init__()
        net = models.resnet50(weights=None)
        for block in (net.layer3[0], net.layer4[0]):
            block.conv2.stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.out_channels = 2048

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, 2048, H/8, W/8)
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class MobileNetV2CAM(nn.Module):
    """MobileNetV2 ``features`` at output stride 8 (stages c=64 and c=160 keep their input size)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = models.mobilenet_v2(weights=None).features
        for index in (7, 14):
            self.features[index].conv[1][0].stride = (1, 1)
        self.out_channels = 1280

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, 1280, H/8, W/8)
        return self.features(images)


class MobileNetV1CAM(nn.Module):
    """timm MobileNetV1 (same parameter names) at output stride 8."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        net = timm.create_model("mobilenetv1_100", pretrained=False)
        for name in ("blocks.3.0.conv_dw", "blocks.4.0.conv_dw"):
            net.get_submodule(name).stride = (1, 1)
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.out_channels = net.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, 1024, H/8, W/8)
        return self.blocks(self.bn1(self.conv_stem(images)))


class TinyCAM(nn.Module):
    """Small conv net for CPU tests and synthetic runs (output stride 8)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, channels = [], 3
        for i, out in enumerate(widths):
            stride = 2 if i < 3 else 1
            layers += [nn.Conv2d(channels, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out)]
            layers += [nn.ReLU(inplace=True), nn.Conv2d(out, out, 3, 1, 1, bias=False)]
            layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


def build_cam_backbone(
    name: str, weights_path: str | Path | None = None, width: int = 16
) -> nn.Module:
    """Build a CAM backbone by name; ``weights_path`` loads ImageNet weights from a local file.

    The file holds the state dict of the unmodified torchvision model (``vgg16``, ``resnet50``,
    ``mobilenet_v2``) or timm model (``mobilenet_v1``); its classifier keys are ignored,
    everything else must match exactly.
    ``vgg16``'s conv6 keeps its fresh initialisation ([WSOL], [OFF]).

    Raises:
        ValueError: unknown name, or weights that do not match.
    """
    if name == "vgg16":
        model = VGG16CAM()
        drop = ("classifier.", "conv6.")
    elif name == "resnet50":
        model, drop = ResNet50CAM(), ("fc.",)
    elif name == "mobilenet_v2":
        model, drop = MobileNetV2CAM(), ("classifier.",)
    elif name == "mobilenet_v1":
        model, drop = MobileNetV1CAM(), ("classifier.",)
    elif name == "tiny":
        model, drop = TinyCAM(width), ()
    else:
        raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")
    if weights_path is not None:
        load_local_weights(model, weights_path, drop_prefixes=drop)
    return model
