"""UST's Fit-in module (thesis section 4.3.2; spec section 3): the try-on output fitted to a person.

1. The bounding box (x0, y0, x1, y1) of the target person's clothing mask m_A (``mask_boxes``;
   an empty mask takes the whole image, with a warning).
2. The whole up-sampled feature map F of G_A (catalog-frame layout) is resized, bilinear with
   ``align_corners=False``, into the box, anisotropically (no crop, no aspect preservation);
   outside the box the pasted map is 0 (``paste_into_boxes``).
3. The pasted map is concatenated with the context image C_A (and, with ``concat_mask``, m_A).
4. A conv block (Conv3x3-IN-ReLU) and a last Conv7x7 with tanh give the image.

``paste=False`` is the "W/O Fit-in" ablation: steps 1-3 are skipped, the conv block and the last
conv read F alone (the output ignores mask and context). No gradient reaches the box or the mask.

The paste is batched and exact: resizing F to (h, w) and placing it at (y0, x0) is, per axis, a
(H_out x H_in) matrix whose rows inside the box hold the two bilinear weights of
``F.interpolate(..., mode="bilinear", align_corners=False)`` (the same source coordinates, in
float32) and whose rows outside are 0, so the pasted map is R_y F R_x^T for the whole batch.
Unlike ``affine_grid`` + ``grid_sample``, whose float32 sampling coordinates drift from
interpolate's by many ulps, it equals the per-sample ``interpolate`` loop up to the order of a
two-term sum, and its backward (two matmuls) is deterministic on CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.ust.blocks import ConvBlock
from lightning_modules.ust.masks import check_mask, mask_boxes

__all__ = ["FitIn", "paste_into_boxes", "paste_weights"]


@torch.no_grad()
def paste_weights(start: Tensor, length: Tensor, out_size: int, in_size: int) -> Tensor:
    """Per sample, the (out_size, in_size) matrix that resizes a line into [start, start + length).

    Rows of output pixels j in the span hold the bilinear weights of source coordinate
    max(s (j - start + 0.5) - 0.5, 0), s = in_size / length (``interpolate``'s rule with
    ``align_corners=False``, its float32 scale and its single rounding of the coordinate, so the
    weights are interpolate's to the bit); every other row is 0.

    Args:
        start: (B,) first output pixel of the span (long).
        length: (B,) span lengths >= 1 (long).
        out_size: Output line length.
        in_size: Input line length.

    Returns:
        (B, out_size, in_size) float32 weights.
    """
    j = torch.arange(out_size, device=start.device)
    offset = j[None, :] - start[:, None]  # (B, out): position inside the span
    inside = (offset >= 0) & (offset < length[:, None])
    scale = torch.tensor(float(in_size), device=start.device) / length.float()  # (B,) float32
    # s (j + 0.5) - 0.5 rounded once to float32, as interpolate's fused multiply-add rounds it
    source = (scale.double()[:, None] * (offset.double() + 0.5) - 0.5).float().clamp(min=0.0)
    low = source.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = source - low.float()
    weights = torch.zeros(len(start), out_size, in_size, device=start.device)
    weights.scatter_add_(2, low[..., None], (1 - frac)[..., None])
    weights.scatter_add_(2, high[..., None], frac[..., None])
    return weights * inside[..., None]


def paste_into_boxes(features: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Each sample's whole map resized (bilinear) into its box of an empty (H, W) canvas.

    Args:
        features: (B, C, h, w) maps.
        boxes: (B, 4) long (x0, y0, x1, y1), inclusive pixels of the canvas.
        size: (H, W) of the canvas.

    Returns:
        (B, C, H, W): 0 outside each box, ``interpolate(features[i], box size, bilinear,
        align_corners=False)`` inside.
    """
    height, width = size
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    rows = paste_weights(y0, y1 - y0 + 1, height, features.shape[-2]).to(features.dtype)
    cols = paste_weights(x0, x1 - x0 + 1, width, features.shape[-1]).to(features.dtype)
    # (B, 1, H, h) @ (B, C, h, w) @ (B, 1, w, W) -> (B, C, H, W)
    return rows[:, None] @ features @ cols[:, None].transpose(-1, -2)


class FitIn(nn.Module):
    """F (B, C_F, h, w), m_A and C_A (B, 3, H, W) -> the try-on image (B, 3, H, W) in [-1, 1].

    Args:
        feature_channels: Channels C_F of G_A's feature map F.
        image_channels: Channels of the context image and of the output.
        hidden_channels: Output channels of the conv block.
        paste: Fit F into the mask's box and add the context (False: the "W/O Fit-in" ablation).
        concat_mask: Also concatenate m_A to the conv block's input (``fitin.concat_mask``).
    """

    def __init__(
        self,
        feature_channels: int = 64,
        image_channels: int = 3,
        hidden_channels: int = 64,
        paste: bool = True,
        concat_mask: bool = False,
    ) -> None:
        super().__init__()
        if concat_mask and not paste:
            raise ValueError("concat_mask needs paste=True: without Fit-in no mask is concatenated")
        self.paste, self.concat_mask = paste, concat_mask
        in_channels = feature_channels + (image_channels + int(concat_mask) if paste else 0)
        self.block = ConvBlock(in_channels, hidden_channels, 3)
        self.to_image = ConvBlock(hidden_channels, image_channels, 7, norm=False, act_layer=nn.Tanh)

    def forward(self, features: Tensor, mask: Tensor | None, context: Tensor | None) -> Tensor:
        """F, m_A (B, 1, H, W), C_A (B, 3, H, W) -> image; without ``paste`` F alone."""
        x = features
        if self.paste:
            if mask is None or context is None:
                raise ValueError("FitIn(paste=True) needs the target's mask and context image")
            mask = check_mask(mask, context).detach()
            fitted = paste_into_boxes(features, mask_boxes(mask), tuple(context.shape[-2:]))
            parts = [fitted, context, mask] if self.concat_mask else [fitted, context]
            x = torch.cat(parts, dim=1)
        return self.to_image(self.block(x))
