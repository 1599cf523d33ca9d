"""UST's content encoders E_B^C (catalog item) and E_A^C (person), thesis section 4.3.2.

A conv block (Conv7x7 s1 3 -> b, IN, ReLU), ``num_downsample`` down-sampling blocks (Conv4x4 s2,
IN, ReLU, doubling the width) and ``num_res_blocks`` residual blocks (Conv3x3-IN-ReLU-Conv3x3-IN
+ skip) give the content code z^C (B, b 2^n, H / 2^n, W / 2^n); MUNIT's layout, defaults
b = 64, n = 2, 4 residual blocks (spec section 3: 256 x H/4 x W/4). E_A^C (``masked=True``)
multiplies the b x H x W output of its first block by the clothing mask m_A, removing background
and skin before down-sampling (the take-off stream of the thesis). The instance norms after it
still see the zeros outside the mask, so z_A^C is not invariant to what lies outside m_A.
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_modules.ust.blocks import ConvBlock, ResBlock, kaiming_init
from lightning_modules.ust.masks import check_mask

__all__ = ["ContentEncoder"]


class ContentEncoder(nn.Module):
    """Images (B, C, H, W) (and m_A) -> content codes (B, out_channels, H / 2^n, W / 2^n).

    Args:
        in_channels: Image channels.
        base_channels: Width b of the first block; each down-sampling doubles it.
        num_downsample: Stride-2 blocks n.
        num_res_blocks: Residual blocks at the code's width.
        masked: Multiply the first block's output by the mask (E_A^C); forward then needs it.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_downsample: int = 2,
        num_res_blocks: int = 4,
        masked: bool = False,
    ) -> None:
        super().__init__()
        if min(in_channels, base_channels) < 1 or min(num_downsample, num_res_blocks) < 0:
            raise ValueError(
                f"ContentEncoder: bad sizes {in_channels=}, {base_channels=}, "
                f"{num_downsample=}, {num_res_blocks=}"
            )
        self.masked = masked
        self.stem = ConvBlock(in_channels, base_channels, 7)
        widths = [base_channels * 2**i for i in range(num_downsample + 1)]
        self.down = nn.Sequential(
            *(ConvBlock(a, b, 4, stride=2) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )
        self.res = nn.Sequential(*(ResBlock(widths[-1]) for _ in range(num_res_blocks)))
        self.out_channels = widths[-1]
        self.apply(kaiming_init)

    def first_block(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """The first block's output (B, b, H, W), multiplied by ``mask`` in E_A^C."""
        features = self.stem(images)
        if not self.masked:
            if mask is not None:
                raise ValueError("ContentEncoder(masked=False) (E_B^C) takes no mask")
            return features
        if mask is None:
            raise ValueError("ContentEncoder(masked=True) (E_A^C) needs the clothing mask m_A")
        return features * check_mask(mask, images)

    def forward(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, C, H, W) images, (B, 1, H, W) mask for E_A^C -> z^C."""
        return self.res(self.down(self.first_block(images, mask)))
