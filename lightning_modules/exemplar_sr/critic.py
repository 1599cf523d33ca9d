"""The WGAN-GP critic of face hallucination, "similar to StyleGAN" (thesis ch. 6; spec section 3).

Unconditional: it sees only I_SR or I_HR. fromRGB Conv1x1 3 -> 64 (LReLU); ``DownBlock``s
[Conv3x3, LReLU, Conv3x3, LReLU, AvgPool2] down to 4 x 4 with widths 64, 128, 256, 512, 512
(log2(S / 4) blocks: five at 128 px; a larger image repeats the last width, e.g. a sixth 512
block at 256 px); minibatch stddev (groups of 4, +1 channel); Conv3x3 513 -> 512 (LReLU);
Linear(512 * 16 -> 512) (LReLU); Linear(512 -> 1), a raw score for ``wgan_critic_loss`` and
``gradient_penalty`` of ``components/adversarial_losses.py``. Every layer has an equalized
learning rate (the final linear with gain 1). Widths are the spec's proposal; the batch must be
a multiple of the stddev group (or smaller than it), see ``components/minibatch_stddev.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from lightning_modules.components.equalized import EqualizedLinear
from lightning_modules.components.minibatch_stddev import MinibatchStdDev
from lightning_modules.exemplar_sr.blocks import LRELU_SLOPE, DownBlock, conv_lrelu

__all__ = ["ExemplarSRCritic"]


class ExemplarSRCritic(nn.Module):
    """Images (B, 3, S, S) -> scores (B,).

    Args:
        image_size: S, a power of two >= 8 (128 for CelebA); the critic has log2(S / 4) blocks.
        widths: Output width of each block, the first also fromRGB's; missing ones repeat the
            last given.
        group_size: Minibatch-stddev group size.
        equalized_lr: Equalized learning rate of every layer.

    Example:

        >>> import torch
        >>> ExemplarSRCritic(32, widths=(8, 16))(torch.zeros(4, 3, 32, 32)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        image_size: int = 128,
        widths: Sequence[int] = (64, 128, 256, 512, 512),
        group_size: int = 4,
        equalized_lr: bool = True,
    ) -> None:
        super().__init__()
        depth = round(math.log2(image_size / 4)) if image_size > 0 else 0
        if image_size < 8 or 4 * 2**depth != image_size or not widths:
            raise ValueError(
                f"ExemplarSRCritic: image_size must be a power of two >= 8 and widths non-empty, "
                f"got {image_size=}, {widths=}"
            )
        chans = [widths[0], *(widths[min(i, len(widths) - 1)] for i in range(depth))]
        eq, top = equalized_lr, chans[-1]
        self.from_rgb = conv_lrelu(3, chans[0], 1, eq)
        self.blocks = nn.Sequential(
            *(DownBlock(a, b, eq) for a, b in zip(chans[:-1], chans[1:], strict=True))
        )
        self.stddev = MinibatchStdDev(group_size)
        self.head = nn.Sequential(
            conv_lrelu(top + 1, top, 3, eq),
            nn.Flatten(),
            EqualizedLinear(top * 16, top, equalized_lr=eq),
            nn.LeakyReLU(LRELU_SLOPE),
            EqualizedLinear(top, 1, gain=1.0, equalized_lr=eq),
        )
        self.image_size = image_size

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B,) raw scores."""
        if images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"critic expects (B, 3, {self.image_size}, {self.image_size}), "
                f"got {tuple(images.shape)}"
            )
        x = self.blocks(self.from_rgb(images))  # (B, top, 4, 4)
        return self.head(self.stddev(x)).squeeze(1)
