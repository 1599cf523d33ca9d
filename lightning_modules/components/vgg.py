"""A small VGG-like network of this suite: the trunk and, with a linear head, a classifier.

``VGGTrunk`` is stages of [Conv 3x3 'same' -> BatchNorm -> ReLU] x ``convs_per_stage`` + MaxPool 2,
one stage per width; it keeps full resolution through the first convolutions, so it sees small
details (a mouth's curve at 46 px) that a stem with stride 4 blurs away. OLR's Siamese encoder
uses it as its trunk, and the spec's DEFAULT classifier C is the same trunk + global average pool
+ a linear layer (``VGGClassifier``). ``create_backbone("latentlab/vgg", ...)`` builds either.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["VGGClassifier", "VGGTrunk"]


class VGGTrunk(nn.Sequential):
    """Stages of ``convs_per_stage`` x [Conv 3x3 'same' -> BN -> ReLU] + MaxPool 2, one per width.

    Args:
        widths: Output channels of each stage; the spatial size halves (floor) per stage.
        in_channels: Channels of the input images.
        convs_per_stage: Conv -> BN -> ReLU blocks before each pooling.

    Attributes:
        out_channels: Channels of the output maps (the last width); ``num_features`` too.

    Example:
        >>> VGGTrunk((16, 32, 64))(torch.zeros(2, 3, 46, 46)).shape
        torch.Size([2, 64, 5, 5])
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        in_channels: int = 3,
        convs_per_stage: int = 2,
    ) -> None:
        if not widths or min(widths) < 1 or convs_per_stage < 1:
            raise ValueError(
                f"widths must be positive and non-empty and convs_per_stage >= 1, "
                f"got widths={list(widths)}, convs_per_stage={convs_per_stage}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)
        self.out_channels = self.num_features = channels


class VGGClassifier(nn.Module):
    """``VGGTrunk`` -> global average pool -> ``Linear(num_features, num_classes)``: logits.

    Args:
        num_classes: Outputs of the linear head.
        widths: Trunk stage widths.
        in_channels: Channels of the input images.
        convs_per_stage: Conv -> BN -> ReLU blocks per trunk stage.

    Example:
        >>> VGGClassifier(38, widths=(16, 32, 64))(torch.zeros(2, 3, 46, 46)).shape
        torch.Size([2, 38])
    """

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128, 256),
        in_channels: int = 3,
        convs_per_stage: int = 2,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.trunk = VGGTrunk(widths, in_channels, convs_per_stage)
        self.num_features = self.trunk.num_features
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.trunk(images).mean(dim=(-2, -1)))
