"""The ISR trunk, the generator that super-resolves I_LR (thesis ch. 6; spec ``hallucination`` 3).

Stem Conv3x3 3 -> 256 (LReLU) on I_LR; concat f^c_1 (H_LR) -> Conv3x3 (256 + K -> 256) (LReLU);
M2 ``ResBlock``s; M1 ``UpBlock``s with widths 256, 128, 64, 32, each doubling the size; after the
first up block (2 H_LR) concat f^c_2 -> Conv1x1 (256 + K -> 256) (LReLU), the thesis's "concatenate
with two times higher resolution feature map" (Fig. 6.3 caption); toRGB Conv1x1 -> 3 with a linear
output (clamped to [-1, 1] only for metrics and figures). CelebA: M1 = 3 (x8, 16 -> 128 px) or 4
(x16, 8 -> 128 px), M2 = 1 [paper]; widths and kernels are the spec's proposal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_modules.components.equalized import EqualizedConv2d
from lightning_modules.exemplar_sr.blocks import ResBlock, UpBlock, check_widths, conv_lrelu

__all__ = ["ISR"]


class ISR(nn.Module):
    """(I_LR (B, 3, H, H), f^c_1 (B, K, H, H), f^c_2 (B, K, 2H, 2H)) -> I_SR (B, 3, 2^M1 H, 2^M1 H).

    Args:
        num_up_blocks: M1, up-sample blocks (the scale factor is 2^M1).
        num_res_blocks: M2, residual blocks at H_LR.
        widths: Output width of each up block; the first M1 are used, the first is also the
            width of the stem, the fusions and the residual blocks.
        feature_channels: K, channels of the fused exemplar features.
        equalized_lr: Equalized learning rate of every convolution.

    Example:
        >>> isr = ISR(3, widths=(16, 8, 8), feature_channels=8)
        >>> lr, f_1 = torch.zeros(2, 3, 16, 16), torch.zeros(2, 8, 16, 16)
        >>> f_2 = torch.zeros(2, 8, 32, 32)
        >>> isr(lr, f_1, f_2).shape
        torch.Size([2, 3, 128, 128])
    """

    def __init__(
        self,
        num_up_blocks: int = 3,
        num_res_blocks: int = 1,
        widths: Sequence[int] = (256, 128, 64, 32),
        feature_channels: int = 128,
        equalized_lr: bool = True,
    ) -> None:
        super().__init__()
        check_widths("ISR", num_up_blocks, widths)
        width, k, eq = widths[0], feature_channels, equalized_lr
        self.stem = conv_lrelu(3, width, 3, eq)
        self.fuse_1 = conv_lrelu(width + k, width, 3, eq)  # f^c_1 at H_LR
        self.res_blocks = nn.Sequential(*(ResBlock(width, eq) for _ in range(num_res_blocks)))
        chans = [width, *widths[:num_up_blocks]]
        self.up_blocks = nn.ModuleList(
            UpBlock(a, b, eq) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        self.fuse_2 = conv_lrelu(chans[1] + k, chans[1], 1, eq)  # f^c_2 at 2 H_LR
        self.to_rgb = EqualizedConv2d(chans[-1], 3, 1, gain=1.0, equalized_lr=eq)
        self.num_up_blocks, self.feature_channels = num_up_blocks, feature_channels

    def forward(self, lr: Tensor, fused_1: Tensor, fused_2: Tensor) -> Tensor:
        """I_LR and the fused features at H_LR and 2 H_LR -> I_SR, unbounded (linear output)."""
        x = self.fuse_1(torch.cat([self.stem(lr), fused_1], dim=1))
        x = self.up_blocks[0](self.res_blocks(x))  # 2 H_LR
        x = self.fuse_2(torch.cat([x, fused_2], dim=1))
        for block in self.up_blocks[1:]:
            x = block(x)
        return self.to_rgb(x)
