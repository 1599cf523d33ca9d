"""A ResNet-18 image encoder with a linear output: images -> (B, out_features) codes.

The encoder E of the disentangled AAE (spec ``disentangle`` section 3) and of the later GAN
methods that encode an image to a latent vector. It is torchvision's ResNet-18 layout with the
widths scaled by ``base_channels``: conv 7x7/2-BN-ReLU, maxpool 3/2, four stages of two
``BasicBlock`` of b/2b/4b/8b channels (stride 2 from the second stage, 1x1 conv-BN shortcut when
the shape changes), global average pool and ``Linear(8b, out_features)``. At ``base_channels=64``
its parameter names and shapes are those of ``torchvision.models.resnet18(num_classes=...)``, so
a torchvision ResNet-18 state_dict loads into it. The global pool makes any input size >= 32 px
work (a 4x4 map at 128 px, 1x1 at 32 px). Never pretrained here: the AAE is unsupervised.

``stem="cifar"`` replaces the ImageNet stem (7x7/2 conv and 3/2 max-pool, a 4x reduction) with
a 3x3/1 conv-BN-ReLU and no pool, as He et al. (2016, section 4.2) do for 32 px CIFAR images: the
four stages then work on the maps an ImageNet stem gives a 4x larger image. At 32 px that is the
32/16/8/4 px pyramid the paper's 128 px faces get; with the ImageNet stem a 32 px face reaches the
first stage as an 8x8 map, and the features of a few pixels that carry head pose and mouth shape
are gone before any residual block sees them.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

__all__ = ["STEMS", "ResNetEncoder"]

STEMS = ("imagenet", "cifar")

STAGE_BLOCKS = (2, 2, 2, 2)  # ResNet-18


class ResNetEncoder(nn.Module):
    """ResNet-18 (widths scaled by ``base_channels``) -> global pool -> linear code.

    Initialisation is torchvision's: Kaiming normal (fan_out, ReLU) for convolutions, BatchNorm
    weight 1 and bias 0, PyTorch's default for the linear output.

    Args:
        out_features: Size of the code (99 for the disentangled AAE).
        base_channels: Width b of the first stage; the stages have b, 2b, 4b, 8b channels.
        in_channels: Channels of the input images.
        stem: ``imagenet`` (torchvision's 7x7/2 conv and 3/2 max-pool) or ``cifar`` (a 3x3/1
            conv, no pool: for inputs of 32-64 px).

    Attributes:
        num_features: Channels of the pooled features (8b), the input size of ``fc``.

    Example:
        >>> ResNetEncoder(10, base_channels=8)(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        out_features: int = 99,
        base_channels: int = 64,
        in_channels: int = 3,
        stem: Literal["imagenet", "cifar"] = "imagenet",
    ) -> None:
        super().__init__()
        if min(out_features, base_channels, in_channels) < 1:
            raise ValueError(f"must be >= 1: {out_features=}, {base_channels=}, {in_channels=}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        b = base_channels
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, b, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, b, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(b)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(b, b, STAGE_BLOCKS[0], stride=1)
        self.layer2 = _stage(b, 2 * b, STAGE_BLOCKS[1], stride=2)
        self.layer3 = _stage(2 * b, 4 * b, STAGE_BLOCKS[2], stride=2)
        self.layer4 = _stage(4 * b, 8 * b, STAGE_BLOCKS[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * b, out_features)
        self.num_features = 8 * b
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, out_features) codes (linear, unbounded)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))  # (B, b, H/r, W/r), r 4 or 1
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8b, H/8r, W/8r)
        return self.fc(self.avgpool(x).flatten(1))  # (B, out_features)


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first changes the stride/width with a 1x1 conv-BN shortcut."""
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [BasicBlock(in_channels, out_channels, stride=stride, downsample=shortcut)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
