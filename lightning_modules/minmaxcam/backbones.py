"""MinMaxCAM's CAM backbones (everything before global average pooling), with the WSOL strides.

Built by the suite's factory (``lightning_modules.components.backbones.create_backbone``) and its
stride surgery, so parameter names and shapes are those of the unmodified library models (minus
the classifier) and ImageNet weights load strictly from a local file:

- ``vgg16``: torchvision VGG16 ``features`` without the last max-pool (output stride 16), then
  ``conv6`` = Conv2d(512, 1024, 3, padding 1) + ReLU (wsolevaluation ``vgg.py``), freshly
  initialized; 14 x 14 x 1024 at 224 px.
- ``resnet50``: stride 1 in ``layer3[0]`` and ``layer4[0]`` (``conv2`` and the downsample
  conv), output stride 8, no dilation; 28 x 28 x 2048 at 224 px.
- ``mobilenet_v2``: stride 1 in the depthwise convs of ``features[7]`` and ``features[14]``;
  28 x 28 x 1280 at 224 px.
- ``mobilenet_v1``: timm ``mobilenetv1_100`` (thesis Table 5.3) with stride 1 in the depthwise
  convs of ``blocks[3][0]`` and ``blocks[4][0]`` (its last two stride-2 steps; the thesis gives no
  details); 28 x 28 x 1024 at 224 px.
- ``tiny``: a 4-stage conv-BN-ReLU net (output stride 8, widths ``width * (1, 2, 4, 8)``) for
  CPU tests and the synthetic configs; not in the paper.

Every backbone maps (B, 3, H, W) images to (B, ``num_features``, h, w) feature maps.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from lightning_modules.components.backbones import create_backbone

#: MinMaxCAM's backbone names -> (the factory's name, output stride).
FACTORY_NAMES = {
    "vgg16": ("torchvision/vgg16", 16),
    "resnet50": ("torchvision/resnet50", 8),
    "mobilenet_v2": ("torchvision/mobilenet_v2", 8),
    "mobilenet_v1": ("timm/mobilenetv1_100", 8),
}
BACKBONES = (*FACTORY_NAMES, "tiny")


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
        self.num_features = widths[-1]

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)


def build_cam_backbone(
    name: str, weights_file: str | Path | None = None, width: int = 16
) -> nn.Module:
    """Build a CAM backbone by name; ``weights_file`` (a manifest key or a path) loads ImageNet
    weights from a local file.

    The file holds the state dict of the unmodified torchvision model (``vgg16``, ``resnet50``,
    ``mobilenet_v2``) or timm model (``mobilenet_v1``); its classifier keys are ignored,
    everything else must match exactly. ``vgg16``'s conv6 keeps its fresh initialisation
    ([WSOL], [OFF]).

    Raises:
        ValueError: unknown name, weights for ``tiny``, or weights that do not match.
    """
    if name == "tiny":
        if weights_file is not None:
            raise ValueError("the tiny backbone has no ImageNet weights; set weights_file: null")
        return TinyCAM(width)
    if name not in FACTORY_NAMES:
        raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")
    factory_name, stride = FACTORY_NAMES[name]
    weights = None if weights_file is None else str(weights_file)
    model = create_backbone(factory_name, weights_file=weights, output_stride=stride)
    if name == "vgg16":
        model.add_module("conv6", nn.Sequential(nn.Conv2d(512, 1024, 3, padding=1), nn.ReLU(True)))
        model.num_features = 1024
    return model
