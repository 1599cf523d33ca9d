"""Adaptive instance normalisation (thesis Eq. 4.1) and the decoders' AdaIN blocks.

AdaIN(z, gamma, beta) = gamma (z - mu(z)) / sigma(z) + beta, with mu and sigma the mean and the
(biased) standard deviation of each sample's channel over H x W, eps 1e-5 under the root (as
``instance_norm``). gamma and beta come from the style MLP: each AdaIN layer with C channels
reads 2C values of the MLP output, the first C as beta, the next C as gamma (MUNIT's
convention), and a block with several AdaIN layers reads them in its layers' order, so a decoder
splits the MLP output (B, P) over its blocks in forward order (``num_adain_params`` each).

The thesis uses AdaIN in every residual and up-sampling block of both decoders (section 4.3.2):
``AdaINResBlock`` (Conv3x3-AdaIN-ReLU-Conv3x3-AdaIN + skip, 4C values) and ``AdaINUpBlock``
(nearest x2, Conv5x5, AdaIN, ReLU; 2C' values for its C' output channels).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from lightning_modules.ust.blocks import reflect_conv

__all__ = ["AdaIN", "AdaINConv", "AdaINResBlock", "AdaINUpBlock", "adain"]

#: Added to the variance before the root (instance_norm's and MUNIT's value).
EPS = 1e-5


def adain(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = EPS) -> Tensor:
    """Eq. 4.1: each sample's channel normalised over H x W, then scaled by gamma, shifted by beta.

    Args:
        x: Activations (B, C, H, W).
        gamma: Scales (B, C).
        beta: Shifts (B, C).
        eps: Added to the (biased) variance under the root.
    """
    return F.instance_norm(x, eps=eps) * gamma[..., None, None] + beta[..., None, None]


class AdaIN(nn.Module):
    """Eq. 4.1 with its 2C parameters given per sample: ``forward(x, params)``.

    Args:
        num_features: Channels C.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_adain_params = 2 * num_features

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        """(B, C, H, W) activations, (B, 2C) parameters [beta | gamma] -> (B, C, H, W)."""
        if params.shape[1:] != (self.num_adain_params,):
            raise ValueError(
                f"AdaIN({self.num_features}) takes (B, {self.num_adain_params}) parameters "
                f"[beta | gamma], got {tuple(params.shape)}"
            )
        beta, gamma = params.split(self.num_features, dim=1)
        return adain(x, gamma, beta)


class AdaINConv(nn.Module):
    """Conv (reflect padding) -> AdaIN -> ReLU (optional).

    Args:
        in_channels: Input channels.
        out_channels: Output channels C (the AdaIN layer takes 2C parameters).
        kernel_size: Square kernel side.
        relu: ReLU after AdaIN.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, relu: bool = True
    ) -> None:
        super().__init__()
        self.conv = reflect_conv(in_channels, out_channels, kernel_size)
        self.norm = AdaIN(out_channels)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.num_adain_params = self.norm.num_adain_params

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        """(B, in, H, W), (B, 2C) -> (B, C, H, W)."""
        return self.act(self.norm(self.conv(x), params))


class AdaINResBlock(nn.Module):
    """x + [Conv3x3-AdaIN-ReLU-Conv3x3-AdaIN](x); parameters (B, 4C), first layer's first.

    Args:
        channels: Channels C of the input and output map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = AdaINConv(channels, channels, 3)
        self.conv2 = AdaINConv(channels, channels, 3, relu=False)
        self.num_adain_params = self.conv1.num_adain_params + self.conv2.num_adain_params

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        """(B, C, h, w), (B, 4C) -> (B, C, h, w)."""
        first, second = params.split(self.conv1.num_adain_params, dim=1)
        return x + self.conv2(self.conv1(x, first), second)


class AdaINUpBlock(nn.Module):
    """Nearest x2 up-sampling -> Conv (reflect) -> AdaIN -> ReLU; parameters (B, 2C').

    Args:
        in_channels: Input channels.
        out_channels: Output channels C'.
        kernel_size: Square kernel side (5, MUNIT's).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = AdaINConv(in_channels, out_channels, kernel_size)
        self.num_adain_params = self.conv.num_adain_params

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        """(B, in, h, w), (B, 2C') -> (B, C', 2h, 2w)."""
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"), params)
