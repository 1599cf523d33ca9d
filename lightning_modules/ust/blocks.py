"""The plain convolution blocks of UST's networks (MUNIT's, thesis ch. 4, spec ``ust`` section 3).

Every convolution pads by reflection (``padding_mode="reflect"``, (k - 1) // 2 pixels, so a 4 x 4
stride-2 convolution halves the size as MUNIT's does); IN is ``InstanceNorm2d`` without affine
parameters. ``kaiming_init`` is the spec's initialisation of every network: Kaiming normal
weights (fan-in, gain sqrt(2)), zero biases, as MUNIT's ``weights_init("kaiming")``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["ConvBlock", "ResBlock", "kaiming_init", "reflect_conv"]


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal weights (fan-in, ReLU gain) and zero biases of a Conv2d or Linear."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight, a=0.0, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def reflect_conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> nn.Conv2d:
    """A convolution padded by (k - 1) // 2 reflected pixels: same size at stride 1, half at 2."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2,
        padding_mode="reflect",
    )


class ConvBlock(nn.Sequential):
    """Conv (reflect padding) -> IN (optional) -> activation (optional).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel side (7, 5, 4, 3 or 1 in UST).
        stride: 1, or 2 to halve the size.
        norm: Instance normalisation (no affine) after the convolution.
        act_layer: Activation type (built with no arguments; ``None``: none).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        norm: bool = True,
        act_layer: Callable[[], nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [reflect_conv(in_channels, out_channels, kernel_size, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(out_channels, affine=False))
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """x + [Conv3x3-IN-ReLU-Conv3x3-IN](x): the content encoders' residual block.

    Args:
        channels: Channels of the input and output map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels, 3),
            ConvBlock(channels, channels, 3, act_layer=None),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        return x + self.body(x)
