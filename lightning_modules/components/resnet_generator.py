"""An inverted ResNet-18 generator: latent codes (B, Z) -> images (B, C, S, S) in [-1, 1].

The generator G of the disentangled AAE (spec ``disentangle`` section 3: "inverted ResNet18; the
first conv of each block is a 4x4 deconv") and of the later GAN methods that decode a latent
vector. ``Linear(Z, 8b)`` -> reshape (8b, 1, 1) -> ConvT(8b, 8b, k4, s1, p0)-BN-ReLU gives a 4x4
map; then upsampling stages of two blocks each double the size: 4b@8, 2b@16, b@32, b@64 (for
128 px; more b stages for larger sizes, stages dropped from the end for smaller ones); a final
ConvT(b, C, k4, s2, p1) reaches ``image_size`` and tanh bounds the output. A stage's first block
is ``UpsamplingBlock`` (below), its second a torchvision ``BasicBlock``. Initialisation is
PyTorch's default; a method that wants another (DCGAN's N(0, 0.02)) applies it itself.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

__all__ = ["ResNetGenerator", "UpsamplingBlock"]


class UpsamplingBlock(nn.Module):
    """Residual block that doubles the spatial size with 4x4 transposed convolutions.

    Main path ConvT(k4, s2, p1)-BN-ReLU-Conv3x3-BN, shortcut ConvT(k4, s2, p1)-BN; their sum goes
    through a ReLU.

    Args:
        in_channels: Channels of the input map (B, in_channels, H, W).
        out_channels: Channels of the output map (B, out_channels, 2H, 2W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, 2H, 2W)."""
        return self.relu(self.main(x) + self.shortcut(x))


class ResNetGenerator(nn.Module):
    """Inverted ResNet-18: latent -> 4x4 map -> upsampling stages -> ConvT -> tanh image.

    Args:
        latent_dim: Size Z of the input codes (99 for the disentangled AAE).
        image_size: Side S of the output images, a power of two >= 16.
        base_channels: Width b; the 4x4 map has 8b channels, the stages 4b, 2b, b, b, ...
        out_channels: Channels C of the output images.

    Example:
        >>> ResNetGenerator(10, image_size=32, base_channels=8)(torch.zeros(2, 10)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        latent_dim: int = 99,
        image_size: int = 128,  # a power of two >= 16
        base_channels: int = 64,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        if min(latent_dim, base_channels, out_channels) < 1:
            raise ValueError(f"must be >= 1: {latent_dim=}, {base_channels=}, {out_channels=}")
        widths = _stage_channels(image_size, base_channels)
        top = 8 * base_channels
        self.latent_dim, self.image_size, self.top_channels = latent_dim, image_size, top
        self.project = nn.Linear(latent_dim, top)
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(top, top, 4, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(top),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], top
        for width in widths:
            stages.append(nn.Sequential(UpsamplingBlock(channels, width), BasicBlock(width, width)))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Sequential(
            nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1), nn.Tanh()
        )

    def forward(self, z: Tensor) -> Tensor:
        """(B, Z) codes -> (B, C, S, S) images in [-1, 1]."""
        x = self.project(z).view(z.shape[0], self.top_channels, 1, 1)  # (B, 8b, 1, 1)
        x = self.stages(self.stem(x))  # (B, 8b, 4, 4) -> (B, w, S/2, S/2)
        return self.to_image(x)  # (B, C, S, S)


def _stage_channels(image_size: int, base_channels: int) -> list[int]:
    """Output channels of each upsampling stage (4x4 -> 8, 16, ... -> image_size / 2).

    Args:
        image_size: Output side, a power of two >= 16.
        base_channels: Width b; the plan is 4b, 2b, b, b, b, ... cut to log2(image_size) - 3.

    Returns:
        One width per stage, e.g. [4b, 2b, b, b] at 128 px, [4b] at 16 px.
    """
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 16, got {image_size}")
    stages = image_size.bit_length() - 1 - 3  # log2(size) - log2(4) - the final ConvT
    plan = [4 * base_channels, 2 * base_channels] + [base_channels] * max(stages - 2, 0)
    return plan[:stages]
