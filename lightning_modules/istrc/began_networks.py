"""The BEGAN networks of ISTRC: the auto-encoding discriminator D = D_dec o D_enc and G.

Berthelot et al., "BEGAN: Boundary Equilibrium Generative Adversarial Networks", 2017,
arXiv:1703.10717, Fig. 1, as the ISTRC spec (Architecture item 2) fixes it: n filters, a code
of Nh = Nz sizes, ELU after every 3x3 'same' convolution ("conv3"), stride-2 convolutions to
downsample, nearest-neighbour x2 to upsample, a linear bottleneck h and a linear output
convolution. The decoder D_dec and the generator G have the same structure and separate weights
(two ``BEGANDecoder`` instances). Initialisation is PyTorch's default (the spec names none).

At 64 px (n = 128, Nh = Nz = 64):

=====  ==========================================================  ========
Block  Encoder D_enc                                               Out
=====  ==========================================================  ========
E0     conv3 3 -> n                                                n x 64^2
E1     conv3 n -> n, conv3 n -> n, conv3 stride 2 n -> n           n x 32^2
E2     conv3 n -> 2n, conv3 2n -> 2n, conv3 s2 2n -> 2n            2n x 16^2
E3     conv3 2n -> 3n, conv3 3n -> 3n, conv3 s2 3n -> 3n           3n x 8^2
E4     conv3 3n -> 4n, conv3 4n -> 4n                              4n x 8^2
h      flatten, Linear(4n * 64 -> Nh), no activation               Nh
=====  ==========================================================  ========

=====  ==========================================================  ========
Block  Decoder D_dec and G (G's input z ~ U[-1, 1]^Nz)             Out
=====  ==========================================================  ========
fc     Linear(Nh -> n * 8 * 8), reshape                            n x 8^2
D1-D3  [conv3 n -> n, conv3 n -> n, nearest upsample x2] x 3       n x 64^2
D4     conv3 n -> n, conv3 n -> n                                  n x 64^2
out    conv3 n -> 3, no activation                                 3 x 64^2
=====  ==========================================================  ========

Other sizes S = 8 * 2^d keep the 8 x 8 bottleneck map with d down and d up blocks: at 32 px
(the spec's test scale) the encoder is E0, E1 (n -> n, s2), E2 (n -> 2n, s2), E3 (2n -> 3n, no
stride) and h = Linear(3n * 64 -> Nh); the decoder has two upsampling blocks.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["BEGANDecoder", "BEGANDiscriminator", "BEGANEncoder"]

#: Side of the smallest feature map, where the encoder flattens and the decoder starts.
BOTTLENECK_SIDE = 8


def scale_blocks(image_size: int) -> int:
    """d, the number of down (and up) blocks between ``image_size`` and the 8 x 8 map.

    Raises:
        ValueError: ``image_size`` is not 8 * 2^d with d >= 1 (16, 32, 64, 128, ...).
    """
    d = round(math.log2(max(image_size, 1) / BOTTLENECK_SIDE))
    if d < 1 or BOTTLENECK_SIDE * 2**d != image_size:
        raise ValueError(f"image_size must be 8 * 2^d, d >= 1 (16, 32, 64, ...), got {image_size}")
    return d


def _conv3(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    """conv3 (3x3, padding 1: 'same' at stride 1, half the side at stride 2) then ELU."""
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ELU()]


def _check_widths(filters: int, code_size: int, channels: int) -> None:
    if min(filters, code_size, channels) < 1:
        raise ValueError(f"must be >= 1: {filters=}, {code_size=}, {channels=}")


class BEGANEncoder(nn.Module):
    """D_enc: images (B, C, S, S) -> codes h (B, code_size), the module docstring's first table.

    Args:
        image_size: Side S of the inputs, 8 * 2^d (64 in the paper; 32 in tests).
        filters: n, the width of the first block; block j has j * n channels.
        code_size: Nh, the size of h.
        channels: C, the image channels.

    Example:
        >>> encoder = BEGANEncoder(image_size=32, filters=8, code_size=16)
        >>> encoder(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 16])
        >>> encoder.blocks(torch.zeros(2, 3, 32, 32)).shape  # 3n x 8 x 8 before h at 32 px
        torch.Size([2, 24, 8, 8])
    """

    def __init__(
        self, image_size: int = 64, filters: int = 128, code_size: int = 64, channels: int = 3
    ) -> None:
        super().__init__()
        _check_widths(filters, code_size, channels)
        d = scale_blocks(image_size)
        layers = _conv3(channels, filters)  # E0
        for j in range(1, d + 1):  # E1 .. Ed: widen (from E2 on), refine, halve the side
            width_in, width = max(j - 1, 1) * filters, j * filters
            layers += [*_conv3(width_in, width), *_conv3(width, width), *_conv3(width, width, 2)]
        width = (d + 1) * filters  # E(d+1): widen and refine at 8 x 8
        layers += [*_conv3(d * filters, width), *_conv3(width, width)]
        self.blocks = nn.Sequential(*layers)
        self.h = nn.Linear(width * BOTTLENECK_SIDE**2, code_size)  # no activation

    def forward(self, images: Tensor) -> Tensor:
        return self.h(self.blocks(images).flatten(1))


class BEGANDecoder(nn.Module):
    """D_dec and G: codes (B, code_size) -> images (B, C, S, S), the module docstring's second
    table. The outputs are unbounded (no final activation); trained on [-1, 1] images.

    Args:
        image_size: Side S of the outputs, 8 * 2^d (64 in the paper; 32 in tests).
        filters: n, the width of every convolution but the last.
        code_size: Nh (D_dec) or Nz (G), the size of the input.
        channels: C, the image channels.

    Example:
        >>> decoder = BEGANDecoder(image_size=32, filters=8, code_size=16)
        >>> decoder(torch.zeros(2, 16)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self, image_size: int = 64, filters: int = 128, code_size: int = 64, channels: int = 3
    ) -> None:
        super().__init__()
        _check_widths(filters, code_size, channels)
        d = scale_blocks(image_size)
        self.filters = filters
        self.fc = nn.Linear(code_size, filters * BOTTLENECK_SIDE**2)  # then reshape, no activation
        layers: list[nn.Module] = []
        for _ in range(d):  # D1 .. Dd
            layers += [*_conv3(filters, filters), *_conv3(filters, filters)]
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [*_conv3(filters, filters), *_conv3(filters, filters)]  # D(d+1)
        layers.append(nn.Conv2d(filters, channels, 3, padding=1))  # out, no activation
        self.blocks = nn.Sequential(*layers)

    def forward(self, codes: Tensor) -> Tensor:
        maps = self.fc(codes).view(-1, self.filters, BOTTLENECK_SIDE, BOTTLENECK_SIDE)
        return self.blocks(maps)


class BEGANDiscriminator(nn.Module):
    """D = D_dec o D_enc, BEGAN's auto-encoding discriminator: ``forward`` reconstructs.

    ``encode`` gives the bottleneck h that ISTRC's mapping F learns to predict; ``decode(h)``
    turns such a code back into an image (the circle reconstruction D_dec(F(E(x)))).

    Args:
        image_size: Side S of the images, 8 * 2^d (64 in the paper; 32 in tests).
        filters: n of both halves.
        code_size: Nh, the size of h.
        channels: C, the image channels.

    Example:
        >>> d = BEGANDiscriminator(image_size=32, filters=8, code_size=16)
        >>> x = torch.zeros(2, 3, 32, 32)
        >>> d(x).shape, d.encode(x).shape, d.decode(torch.zeros(5, 16)).shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 16]), torch.Size([5, 3, 32, 32]))
    """

    def __init__(
        self, image_size: int = 64, filters: int = 128, code_size: int = 64, channels: int = 3
    ) -> None:
        super().__init__()
        self.encoder = BEGANEncoder(image_size, filters, code_size, channels)
        self.decoder = BEGANDecoder(image_size, filters, code_size, channels)

    def forward(self, images: Tensor) -> Tensor:
        """D(v): reconstructions (B, C, S, S) of images (B, C, S, S)."""
        return self.decoder(self.encoder(images))

    def encode(self, images: Tensor) -> Tensor:
        """h = D_enc(v): (B, C, S, S) -> (B, code_size)."""
        return self.encoder(images)

    def decode(self, codes: Tensor) -> Tensor:
        """D_dec(h): (B, code_size) -> (B, C, S, S)."""
        return self.decoder(codes)
