"""ROI(x): the clothing region of an image on the catalog's frame (thesis Eq. 4.6, Try-on ROI).

ROI(x) = x m_A + 1 (1 - m_A), cropped to bbox(m_A) and resized, bilinear with
``align_corners=False``, to the catalog size (H_B, W_B) (spec sections 4 and 6, decision 4: the
thesis says "segmented clothing region"; white fill as catalog backgrounds). It serves the
perceptual loss (LPIPS and Gram of I_AB against ROI(I_A), of ROI(I_BA) against I_B) and the
Try-on ROI metric (ROI(I_BA) against ROI(I_A)).

Batched and exact like the Fit-in paste (``fit_in.paste_into_boxes``): cropping a line to
[start, start + length) and resizing it to n pixels is an (n x in) matrix holding the two
bilinear weights of ``interpolate``'s source coordinate per row, so the ROI is R_y X R_x^T for the
whole batch, equal to the per-sample crop + ``interpolate`` loop. Gradients flow to the image,
none to the mask or its box.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_modules.ust.masks import check_mask, mask_boxes, white_fill

__all__ = ["crop_resize", "crop_weights", "roi"]


@torch.no_grad()
def crop_weights(start: Tensor, length: Tensor, out_size: int, in_size: int) -> Tensor:
    """Per sample, the (out_size, in_size) matrix resizing the span [start, start + length).

    Row j holds the bilinear weights of the crop coordinate max(s (j + 0.5) - 0.5, 0),
    s = length / out_size (``interpolate``'s rule with ``align_corners=False``, its float32
    scale and its one rounding of the coordinate), shifted by ``start``.

    Args:
        start: (B,) first input pixel of the span (long).
        length: (B,) span lengths >= 1 (long), start + length <= in_size.
        out_size: Output line length.
        in_size: Input line length.

    Returns:
        (B, out_size, in_size) float32 weights; each row sums to 1.
    """
    j = torch.arange(out_size, device=start.device, dtype=torch.float64)
    scale = length.float() / torch.tensor(float(out_size), device=start.device)  # (B,) float32
    source = (scale.double()[:, None] * (j[None] + 0.5) - 0.5).float().clamp(min=0.0)
    low = torch.minimum(source.floor().long(), length[:, None] - 1)
    high = torch.minimum(low + 1, length[:, None] - 1)
    frac = source - low.float()
    weights = torch.zeros(len(start), out_size, in_size, device=start.device)
    weights.scatter_add_(2, (low + start[:, None])[..., None], (1 - frac)[..., None])
    weights.scatter_add_(2, (high + start[:, None])[..., None], frac[..., None])
    return weights


def crop_resize(images: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Each image cropped to its box and resized (bilinear) to ``size``.

    Args:
        images: (B, C, H, W).
        boxes: (B, 4) long (x0, y0, x1, y1), inclusive pixels.
        size: (H_out, W_out).

    Returns:
        (B, C, H_out, W_out): ``interpolate(images[i, :, y0:y1+1, x0:x1+1], size, bilinear,
        align_corners=False)`` per sample.
    """
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    rows = crop_weights(y0, y1 - y0 + 1, size[0], images.shape[-2]).to(images.dtype)
    cols = crop_weights(x0, x1 - x0 + 1, size[1], images.shape[-1]).to(images.dtype)
    # (B, 1, H_out, H) @ (B, C, H, W) @ (B, 1, W, W_out) -> (B, C, H_out, W_out)
    return rows[:, None] @ images @ cols[:, None].transpose(-1, -2)


def roi(images: Tensor, mask: Tensor, size: tuple[int, int]) -> Tensor:
    """ROI(x): ``images`` (B, C, H, W) in [-1, 1] white outside m_A (B, 1, H, W), cropped to
    bbox(m_A) and resized to ``size`` (H_B, W_B). An empty mask takes the whole image (with
    ``mask_boxes``'s warning)."""
    mask = check_mask(mask, images).detach()
    return crop_resize(white_fill(images, mask), mask_boxes(mask), size)
