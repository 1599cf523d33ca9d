"""G_S, the small generator of PWAVE (thesis ch. 6; spec ``hallucination`` section 3).

It makes I'_LR = G_S(I_LR), an estimate of the HR image at 2 H_LR, the input x_2 of WNN-2. It
reads only I_LR and is trained only by its own loss bracket (Eqs. 6.2 and 6.4): the generator feeds
WNN-2 its output detached. Layers [spec proposal]: Conv3x3 3 -> 64 (LReLU), 2 ``ResBlock``s,
nearest x2, Conv3x3 64 -> 64 (LReLU), Conv3x3 64 -> 3, linear output.
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_modules.components.equalized import EqualizedConv2d
from lightning_modules.exemplar_sr.blocks import ResBlock, conv_lrelu

__all__ = ["SmallGenerator"]


class SmallGenerator(nn.Sequential):
    """I_LR (B, 3, H, W) -> I'_LR (B, 3, 2H, 2W).

    Args:
        channels: Width of every hidden layer.
        num_res_blocks: Residual blocks at H_LR.
        equalized_lr: Equalized learning rate of every convolution.

    Example:

        >>> import torch
        >>> SmallGenerator(channels=8)(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self, channels: int = 64, num_res_blocks: int = 2, equalized_lr: bool = True
    ) -> None:
        super().__init__(
            conv_lrelu(3, channels, 3, equalized_lr),
            *(ResBlock(channels, equalized_lr) for _ in range(num_res_blocks)),
            nn.Upsample(scale_factor=2, mode="nearest"),
            conv_lrelu(channels, channels, 3, equalized_lr),
            EqualizedConv2d(channels, 3, 3, gain=1.0, equalized_lr=equalized_lr),
        )

    def forward(self, lr: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 3, 2H, 2W), unbounded (linear output)."""
        return super().forward(lr)
