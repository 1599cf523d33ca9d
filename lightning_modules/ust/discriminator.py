"""UST's discriminators D_A and D_B: multi-scale PatchGANs (MUNIT's; spec section 3).

At each of ``num_scales`` scales a PatchGAN, Conv4x4 s2 (reflect padding) in -> 64 -> 128 ->
256 -> 512, each followed by LeakyReLU(0.2), no normalisation, then Conv1x1 -> 1, scores every
patch; the input of the next scale is the previous one average-pooled (3x3, stride 2, padding 1,
padding not counted). The outputs, one (B, 1, h_s, w_s) map per scale, go to the LSGAN losses of
``components/adversarial_losses.py``, which average over scales.

D_A's mask attention (thesis section 4.3.2): the person image is concatenated with its clothing
mask m_A, so D_A reads 4 channels; D_B, and D_A in the "W/O mask attention" ablation, read 3.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_modules.ust.blocks import ConvBlock, kaiming_init
from lightning_modules.ust.masks import check_mask

__all__ = ["MultiScaleDiscriminator", "PatchDiscriminator"]


class PatchDiscriminator(nn.Sequential):
    """(B, C, H, W) -> (B, 1, H / 2^L, W / 2^L) patch scores.

    Args:
        in_channels: Input channels.
        base_channels: Width of the first conv; each later one doubles it.
        num_layers: Stride-2 convs L.
    """

    def __init__(self, in_channels: int, base_channels: int = 64, num_layers: int = 4) -> None:
        widths = [in_channels] + [base_channels * 2**i for i in range(num_layers)]
        lrelu = partial(nn.LeakyReLU, 0.2, inplace=True)
        layers: list[nn.Module] = [
            ConvBlock(a, b, 4, stride=2, norm=False, act_layer=lrelu)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        ]
        super().__init__(*layers, nn.Conv2d(widths[-1], 1, 1))


class MultiScaleDiscriminator(nn.Module):
    """Images (and m_A) -> one patch-score map per scale, finest first.

    Args:
        image_channels: Image channels.
        mask_attention: Concatenate the mask to the image (D_A; forward then needs it); without
            it a mask given to ``forward`` is not read (so one call serves both ablations).
        base_channels: Width of each PatchGAN's first conv.
        num_layers: Stride-2 convs per PatchGAN.
        num_scales: Scales.

    Each scale's input must have sides >= 2^num_layers: 256 x 192 images take the defaults,
    64 x 48 ones (the twin's test size) ``num_layers=3`` (or ``num_scales=2``).

    Example:
        >>> d_a = MultiScaleDiscriminator(mask_attention=True, base_channels=8, num_layers=3)
        >>> [s.shape for s in d_a(torch.zeros(2, 3, 64, 48), torch.ones(2, 1, 64, 48))]
        [torch.Size([2, 1, 8, 6]), torch.Size([2, 1, 4, 3]), torch.Size([2, 1, 2, 1])]
    """

    def __init__(
        self,
        image_channels: int = 3,
        mask_attention: bool = False,
        base_channels: int = 64,
        num_layers: int = 4,
        num_scales: int = 3,
    ) -> None:
        super().__init__()
        if min(image_channels, base_channels, num_layers, num_scales) < 1:
            raise ValueError(
                f"MultiScaleDiscriminator: bad sizes {image_channels=}, {base_channels=}, "
                f"{num_layers=}, {num_scales=}"
            )
        self.mask_attention, self.num_layers = mask_attention, num_layers
        self.in_channels = image_channels + int(mask_attention)
        self.scales = nn.ModuleList(
            PatchDiscriminator(self.in_channels, base_channels, num_layers)
            for _ in range(num_scales)
        )
        self.apply(kaiming_init)

    def forward(self, images: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """(B, C, H, W) images, (B, 1, H, W) mask for D_A -> [(B, 1, h_s, w_s)] per scale."""
        x = images
        if self.mask_attention:
            if mask is None:
                raise ValueError("MultiScaleDiscriminator(mask_attention=True) needs the mask")
            x = torch.cat([images, check_mask(mask, images)], dim=1)
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            self._check_size(x, i, images)
            outputs.append(scale(x))
        return outputs

    def _check_size(self, x: Tensor, scale: int, images: Tensor) -> None:
        """Each reflect-padded stride-2 conv needs a side >= 2: scale inputs of >= 2^L pixels."""
        need = 2**self.num_layers
        if min(x.shape[-2:]) < need:
            raise ValueError(
                f"MultiScaleDiscriminator: scale {scale + 1} of {len(self.scales)} gets "
                f"{tuple(x.shape[-2:])} maps, too small for {self.num_layers} stride-2 convs "
                f"(sides >= {need}); use fewer num_layers or num_scales for "
                f"{tuple(images.shape[-2:])} images"
            )
