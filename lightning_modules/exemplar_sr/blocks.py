"""The convolution blocks of the hallucination networks (thesis ch. 6; spec ``hallucination`` 3).

Every convolution is an ``EqualizedConv2d`` (zero padding, (k - 1) // 2 pixels) followed, where
the spec says so, by LeakyReLU(0.2); ``equalized_lr=False`` gives plain He-initialised layers.

- ``conv_lrelu``: Conv -> LReLU, the unit of every block;
- ``DownBlock``: [Conv3x3, LReLU, Conv3x3, LReLU, AvgPool2], a stage of E_Ex and of the critic;
- ``UpBlock``: [nearest x2, Conv3x3, LReLU, Conv3x3, LReLU], an ISR up-sample block;
- ``ResBlock``: x + [Conv3x3, LReLU, Conv3x3](x), in G_S and the ISR trunk;
- ``check_widths``: a width per block of E_Ex and of the ISR trunk.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_modules.components.equalized import EqualizedConv2d

__all__ = ["DownBlock", "ResBlock", "UpBlock", "check_widths", "conv_lrelu"]

LRELU_SLOPE = 0.2


def conv_lrelu(
    in_channels: int, out_channels: int, kernel_size: int = 3, equalized_lr: bool = True
) -> nn.Sequential:
    """Conv (same size) -> LeakyReLU(0.2)."""
    return nn.Sequential(
        EqualizedConv2d(in_channels, out_channels, kernel_size, equalized_lr=equalized_lr),
        nn.LeakyReLU(LRELU_SLOPE),
    )


def _conv_pair(in_channels: int, out_channels: int, equalized_lr: bool) -> list[nn.Module]:
    """Conv3x3-LReLU (in -> out), Conv3x3-LReLU (out -> out)."""
    return [
        conv_lrelu(in_channels, out_channels, 3, equalized_lr),
        conv_lrelu(out_channels, out_channels, 3, equalized_lr),
    ]


def check_widths(network: str, count: int, widths: Sequence[int]) -> None:
    """Refuse fewer than one block, or fewer widths than blocks."""
    if count < 1 or len(widths) < count:
        raise ValueError(
            f"{network}: needs at least one block and a width per block, got "
            f"{count} blocks and widths {tuple(widths)}"
        )


class DownBlock(nn.Sequential):
    """(B, in, H, W) -> (B, out, H / 2, W / 2): two conv-LReLU (in -> out -> out), 2x2 avg pool."""

    def __init__(self, in_channels: int, out_channels: int, equalized_lr: bool = True) -> None:
        super().__init__(*_conv_pair(in_channels, out_channels, equalized_lr), nn.AvgPool2d(2))


class UpBlock(nn.Sequential):
    """(B, in, H, W) -> (B, out, 2H, 2W): nearest x2, then two conv-LReLU (in -> out -> out)."""

    def __init__(self, in_channels: int, out_channels: int, equalized_lr: bool = True) -> None:
        up = nn.Upsample(scale_factor=2, mode="nearest")
        super().__init__(up, *_conv_pair(in_channels, out_channels, equalized_lr))


class ResBlock(nn.Module):
    """x + [Conv3x3, LReLU, Conv3x3](x), no normalisation, no activation after the sum.

    Args:
        channels: Channels of the input and output map.
        equalized_lr: Equalized learning rate of the convolutions.
    """

    def __init__(self, channels: int, equalized_lr: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_lrelu(channels, channels, 3, equalized_lr),
            EqualizedConv2d(channels, channels, 3, equalized_lr=equalized_lr),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        return x + self.body(x)
