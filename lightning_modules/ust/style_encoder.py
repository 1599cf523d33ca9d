"""UST's style module: the style encoder E^S and the MLP that turns a style code into AdaIN
parameters (thesis section 4.3.2, "shared style encoding module"; spec section 3).

E^S: Conv7x7 3 -> b, ReLU; ``num_downsample`` Conv4x4 s2 + ReLU (widths 2b, 4b, 4b, 4b: MUNIT's,
doubling twice, then constant), no normalisation; global average pooling; Conv1x1 -> SD, the
style code (8, 32 or 128 in the thesis; 8 by default). The MLP (``components.mlp.MLP``,
SD -> 256 -> 256 -> P, ReLU) gives the P AdaIN parameters of a decoder, in that decoder's
module order (``adain.py``). One ``StyleModule`` serves both domains in the full model; the
"W/O shared S.E." ablation gives each domain its own (``generator.py``). Inputs of domain A are
masked items I_A^m (white outside m_A), of domain B catalog images.
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_modules.components.mlp import MLP
from lightning_modules.ust.blocks import ConvBlock, kaiming_init

__all__ = ["StyleEncoder", "StyleModule"]


class StyleEncoder(nn.Module):
    """Images (B, C, H, W) -> style codes (B, style_dim).

    Args:
        in_channels: Image channels.
        base_channels: Width b of the first conv; the strided convs widen to at most 4b.
        num_downsample: Stride-2 convs.
        style_dim: SD, the size of the code.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_downsample: int = 4,
        style_dim: int = 8,
    ) -> None:
        super().__init__()
        if min(in_channels, base_channels, style_dim) < 1 or num_downsample < 0:
            raise ValueError(
                f"StyleEncoder: bad sizes {in_channels=}, {base_channels=}, {num_downsample=}, "
                f"{style_dim=}"
            )
        widths = [base_channels] + [
            base_channels * 2 ** min(i + 1, 2) for i in range(num_downsample)
        ]
        layers: list[nn.Module] = [ConvBlock(in_channels, base_channels, 7, norm=False)]
        layers += [
            ConvBlock(a, b, 4, stride=2, norm=False)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], style_dim, 1)
        self.style_dim = style_dim
        self.apply(kaiming_init)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, SD)."""
        pooled = self.features(images).mean(dim=(2, 3), keepdim=True)  # (B, 4b, 1, 1)
        return self.head(pooled).flatten(1)


class StyleModule(nn.Module):
    """E^S and its MLP: ``forward(images)`` -> codes, ``adain_params(codes)`` -> (B, P).

    Args:
        num_adain_params: P, what the decoder(s) fed by this module read.
        in_channels: Image channels.
        base_channels: Width b of E^S.
        num_downsample: Stride-2 convs of E^S.
        style_dim: SD.
        mlp_channels: Width of the MLP's hidden layers.
        mlp_hidden_layers: Hidden layers of the MLP (2: Linear-ReLU-Linear-ReLU-Linear).
    """

    def __init__(
        self,
        num_adain_params: int,
        in_channels: int = 3,
        base_channels: int = 64,
        num_downsample: int = 4,
        style_dim: int = 8,
        mlp_channels: int = 256,
        mlp_hidden_layers: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = StyleEncoder(in_channels, base_channels, num_downsample, style_dim)
        self.mlp = MLP(style_dim, (mlp_channels,) * mlp_hidden_layers, num_adain_params)
        self.mlp.apply(kaiming_init)
        self.style_dim, self.num_adain_params = style_dim, num_adain_params

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, SD) style codes."""
        return self.encoder(images)

    def adain_params(self, codes: Tensor) -> Tensor:
        """(B, SD) codes -> (B, P) AdaIN parameters in decoder-module order."""
        return self.mlp(codes)
