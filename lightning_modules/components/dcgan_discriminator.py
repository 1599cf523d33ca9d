"""The DCGAN image discriminator: (B, C, S, S) images -> (B,) logits, real vs generated.

The image discriminator D_x of the disentangled AAE (spec ``disentangle`` section 3) and the
DCGAN critic of the later GAN methods (Radford et al., ICLR 2016). Conv(C -> b, k4, s2, p1)-
LeakyReLU(0.2), then stride-2 stages that double the width, Conv k4 s2 p1 (no bias)-BN-
LeakyReLU(0.2), until the map is 4x4 (128 px: b -> 2b -> 4b -> 8b -> 16b), then Conv(-> 1, k4,
s1, p0) gives one logit. Initialisation is PyTorch's default; a method that wants DCGAN's
N(0, 0.02) applies it itself.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DCGANDiscriminator"]


class DCGANDiscriminator(nn.Module):
    """Strided 4x4 convolutions down to a 4x4 map, then a 4x4 convolution to one logit.

    Args:
        image_size: Side S of the input images, a power of two >= 16; inputs of another size
            are refused.
        base_channels: Width b of the first convolution; each later stage doubles it.
        in_channels: Channels C of the input images.

    Example:
        >>> DCGANDiscriminator(32, base_channels=8)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2])
    """

    def __init__(
        self, image_size: int = 128, base_channels: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        if image_size < 16 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 16, got {image_size}")
        if min(base_channels, in_channels) < 1:
            raise ValueError(f"must be >= 1: {base_channels=}, {in_channels=}")
        self.image_size = image_size
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels, size = base_channels, image_size // 2
        while size > 4:
            layers += [
                nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(2 * channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels, size = 2 * channels, size // 2
        self.features = nn.Sequential(*layers)
        self.logit = nn.Conv2d(channels, 1, 4, stride=1, padding=0)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, S, S) images -> (B,) logits (positive: judged real)."""
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"DCGANDiscriminator(image_size={self.image_size}) got images of size "
                f"{tuple(images.shape[-2:])}; build it with the data's image size"
            )
        return self.logit(self.features(images)).flatten()  # (B, w, 4, 4) -> (B,)
