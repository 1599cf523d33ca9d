"""Equalized learning rate: convolutions and linears whose weights are scaled at run time.

Karras et al., "Progressive Growing of GANs" (ICLR 2018, arXiv:1710.10196, section 4.1), kept by
StyleGAN (arXiv:1812.04948): a weight is stored as w ~ N(0, 1) and used as w * c with
c = gain / sqrt(fan_in) (fan_in = in_channels * k * k for a convolution, in_features for a
linear), so Adam's per-parameter step moves every layer's effective weights at the same relative
rate. The hallucination spec (section 3) turns it on for all its networks because Adam(0, 0.99)
at lr 0.003 needs it. Biases start at zero and are not scaled.

``equalized_lr=False`` is the plain layer: the weight is initialised once to
N(0, (gain / sqrt(fan_in))^2) (He initialisation) and used as stored (``weight_scale`` = 1), so
both settings start from the same distribution of effective weights.

``gain``: sqrt(2) (the default) before a LeakyReLU/ReLU, 1 for a linear output (toRGB, scores).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["EqualizedConv2d", "EqualizedLinear"]


def _init_equalized(layer: nn.Conv2d | nn.Linear, fan_in: int) -> None:
    """Store N(0, 1) weights scaled by c at run time, or N(0, c^2) weights used as they are."""
    std = layer.gain / math.sqrt(fan_in)
    layer.weight_scale = std if layer.equalized_lr else 1.0
    with torch.no_grad():
        layer.weight.normal_(0.0, 1.0 if layer.equalized_lr else std)
        if layer.bias is not None:
            layer.bias.zero_()


class EqualizedConv2d(nn.Conv2d):
    """A 2-D convolution with an equalized learning rate (or, switched off, He initialisation).

    Padding defaults to (k - 1) // 2 zeros, so a stride-1 convolution keeps the size.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel side.
        stride: Stride.
        padding: Zero padding; None: (kernel_size - 1) // 2.
        bias: Learn a bias (started at zero).
        gain: c * sqrt(fan_in): sqrt(2) before a leaky ReLU, 1 before a linear output.
        equalized_lr: Scale N(0, 1) weights by c at run time; False: plain He-initialised weights.

    Example:
        >>> conv = EqualizedConv2d(4, 8, 3)
        >>> conv(torch.zeros(2, 4, 16, 16)).shape, round(conv.weight_scale, 4)
        (torch.Size([2, 8, 16, 16]), 0.2357)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
        gain: float = math.sqrt(2.0),
        equalized_lr: bool = True,
    ) -> None:
        self.gain, self.equalized_lr, self.weight_scale = gain, equalized_lr, 1.0
        padding = (kernel_size - 1) // 2 if padding is None else padding
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)

    def reset_parameters(self) -> None:
        """N(0, 1) weights (equalized) or N(0, c^2) weights (plain); zero bias."""
        _init_equalized(self, self.weight[0].numel())

    @property
    def effective_weight(self) -> Tensor:
        """The weight the convolution uses: ``weight * weight_scale``."""
        return self.weight * self.weight_scale

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H', W')."""
        return self._conv_forward(x, self.effective_weight, self.bias)


class EqualizedLinear(nn.Linear):
    """A linear layer with an equalized learning rate (or, switched off, He initialisation).

    Args:
        in_features: Input features.
        out_features: Output features.
        bias: Learn a bias (started at zero).
        gain: c * sqrt(in_features): sqrt(2) before a leaky ReLU, 1 before a linear output.
        equalized_lr: Scale N(0, 1) weights by c at run time; False: plain He-initialised weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        gain: float = math.sqrt(2.0),
        equalized_lr: bool = True,
    ) -> None:
        self.gain, self.equalized_lr, self.weight_scale = gain, equalized_lr, 1.0
        super().__init__(in_features, out_features, bias=bias)

    def reset_parameters(self) -> None:
        """N(0, 1) weights (equalized) or N(0, c^2) weights (plain); zero bias."""
        _init_equalized(self, self.in_features)

    @property
    def effective_weight(self) -> Tensor:
        """The weight the layer uses: ``weight * weight_scale``."""
        return self.weight * self.weight_scale

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features)."""
        return F.linear(x, self.effective_weight, self.bias)
