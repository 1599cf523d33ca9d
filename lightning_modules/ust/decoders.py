"""UST's decoders G_B (take-off, catalog item) and G_A (try-on, person in context), thesis
section 4.3.2 and spec section 3.

Both run the same AdaIN body on a content code: ``num_res_blocks`` AdaIN residual blocks at the
code's width, then ``num_upsample`` up-sampling blocks (nearest x2, Conv5x5 halving the width,
AdaIN, ReLU): AdaIN in every residual and up-sampling block, its parameters (B, P) from the style
MLP, split over the blocks in forward order (``AdaINDecoder.num_adain_params`` = P, 4480 for the
defaults: 4 blocks x 2 layers x 2 x 256 + 2 x 128 + 2 x 64).

- G_B (``TakeOffDecoder``): body, then Conv7x7 64 -> 3 and tanh.
- G_A (``TryOnDecoder``): with ``mask_attention``, the code is concatenated with m_A resized
  (nearest) to the code's size and a Conv3x3 + ReLU brings it back to the code's width; then the
  body gives the feature map F (64 x H x W, catalog-frame layout) and the Fit-in module
  (``fit_in.py``) the image, fitted into the target person's mask box over its context.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_modules.ust.adain import AdaINResBlock, AdaINUpBlock
from lightning_modules.ust.blocks import ConvBlock, kaiming_init
from lightning_modules.ust.fit_in import FitIn
from lightning_modules.ust.masks import check_mask

__all__ = ["AdaINDecoder", "TakeOffDecoder", "TryOnDecoder"]


class AdaINDecoder(nn.Module):
    """Content code (B, C, h, w) and AdaIN parameters (B, P) -> features (B, C / 2^n, 2^n h, 2^n w).

    Args:
        in_channels: Width C of the content code.
        num_res_blocks: AdaIN residual blocks.
        num_upsample: Up-sampling blocks n, each halving the width.
        up_kernel_size: Kernel side of the up-sampling convs.
    """

    def __init__(
        self,
        in_channels: int = 256,
        num_res_blocks: int = 4,
        num_upsample: int = 2,
        up_kernel_size: int = 5,
    ) -> None:
        super().__init__()
        if in_channels % 2**num_upsample or min(num_res_blocks, num_upsample) < 0:
            raise ValueError(
                f"AdaINDecoder: {in_channels=} must split into {num_upsample=} halvings and "
                f"{num_res_blocks=} >= 0"
            )
        blocks: list[nn.Module] = [AdaINResBlock(in_channels) for _ in range(num_res_blocks)]
        widths = [in_channels // 2**i for i in range(num_upsample + 1)]
        blocks += [
            AdaINUpBlock(a, b, up_kernel_size) for a, b in zip(widths[:-1], widths[1:], strict=True)
        ]
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = widths[-1]
        self.param_sizes = [block.num_adain_params for block in self.blocks]
        self.num_adain_params = sum(self.param_sizes)

    def forward(self, content: Tensor, adain_params: Tensor) -> Tensor:
        """(B, C, h, w), (B, P) -> (B, C / 2^n, 2^n h, 2^n w)."""
        if adain_params.shape[1:] != (self.num_adain_params,):
            raise ValueError(
                f"the decoder reads (B, {self.num_adain_params}) AdaIN parameters, got "
                f"{tuple(adain_params.shape)}"
            )
        x = content
        for block, params in zip(self.blocks, adain_params.split(self.param_sizes, 1), strict=True):
            x = block(x, params)
        return x


class TakeOffDecoder(nn.Module):
    """G_B: content code, AdaIN parameters -> catalog image (B, 3, H, W) in [-1, 1].

    Args:
        in_channels: Width of the content code.
        num_res_blocks: AdaIN residual blocks.
        num_upsample: Up-sampling blocks.
        image_channels: Output channels.
    """

    def __init__(
        self,
        in_channels: int = 256,
        num_res_blocks: int = 4,
        num_upsample: int = 2,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        self.body = AdaINDecoder(in_channels, num_res_blocks, num_upsample)
        self.to_image = ConvBlock(
            self.body.out_channels, image_channels, 7, norm=False, act_layer=nn.Tanh
        )
        self.num_adain_params = self.body.num_adain_params
        self.apply(kaiming_init)

    def forward(self, content: Tensor, adain_params: Tensor) -> Tensor:
        """(B, C, h, w), (B, P) -> (B, 3, 2^n h, 2^n w)."""
        return self.to_image(self.body(content, adain_params))


class TryOnDecoder(nn.Module):
    """G_A: content code, AdaIN parameters, target mask m_A and context C_A -> person image.

    Args:
        in_channels: Width of the content code.
        num_res_blocks: AdaIN residual blocks.
        num_upsample: Up-sampling blocks.
        image_channels: Channels of the context and output images.
        mask_attention: Concatenate m_A (nearest-resized) to the code, then Conv3x3 + ReLU
            (False: the "W/O mask attention" ablation, the code goes to the body as it is).
        fit_in: Fit F into the mask's box over the context (False: the "W/O Fit-in" ablation).
        concat_mask: Fit-in also concatenates m_A (``fitin.concat_mask``).
        fit_in_channels: Output channels of the Fit-in conv block.
    """

    def __init__(
        self,
        in_channels: int = 256,
        num_res_blocks: int = 4,
        num_upsample: int = 2,
        image_channels: int = 3,
        mask_attention: bool = True,
        fit_in: bool = True,
        concat_mask: bool = False,
        fit_in_channels: int = 64,
    ) -> None:
        super().__init__()
        self.mask_attention = mask_attention
        self.attend = (
            ConvBlock(in_channels + 1, in_channels, 3, norm=False) if mask_attention else None
        )
        self.body = AdaINDecoder(in_channels, num_res_blocks, num_upsample)
        self.fit_in = FitIn(
            self.body.out_channels, image_channels, fit_in_channels, fit_in, concat_mask
        )
        self.num_adain_params = self.body.num_adain_params
        self.apply(kaiming_init)

    def features(self, content: Tensor, adain_params: Tensor, mask: Tensor | None) -> Tensor:
        """F (B, 64, 2^n h, 2^n w): the body's output, before Fit-in."""
        if self.attend is not None:
            if mask is None:
                raise ValueError("TryOnDecoder(mask_attention=True) needs the target mask m_A")
            small = F.interpolate(check_mask(mask), size=content.shape[-2:], mode="nearest")
            content = self.attend(torch.cat([content, small.detach()], dim=1))
        return self.body(content, adain_params)

    def forward(
        self,
        content: Tensor,
        adain_params: Tensor,
        mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """(B, C, h, w), (B, P), m_A (B, 1, H, W), C_A (B, 3, H, W) -> (B, 3, H, W) in [-1, 1].

        Mask and context may be None only where neither mask attention nor Fit-in is on.
        """
        return self.fit_in(self.features(content, adain_params, mask), mask, context)
