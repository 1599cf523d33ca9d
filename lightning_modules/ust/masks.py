"""The clothing mask m_A in UST's networks: its checks, its box and the images made with it.

A mask is a float tensor (B, 1, H, W) of 0 / 1 (values above 0.5 count as inside), on the grid
of the person image it belongs to. ``mask_boxes`` is ``torchvision.ops.masks_to_boxes`` without a
Python loop (x0, y0, x1, y1, inclusive pixels), an empty mask taking the whole image with a
warning (spec section 3, Fit-in); ``white_fill`` is the masked item view I_A^m = I m + 1 (1 - m)
(white outside the mask, like catalog backgrounds) and ``remove_item`` the context
C_A = I (1 - m) (0, mid-gray in [-1, 1], inside), both spec section 2.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["check_mask", "mask_boxes", "remove_item", "white_fill"]


def check_mask(mask: Tensor, image: Tensor | None = None, name: str = "mask") -> Tensor:
    """``mask`` if it is (B, 1, H, W) floating point (and on ``image``'s B, H, W grid), else raise.

    Raises:
        ValueError: another shape or dtype, naming both shapes.
    """
    ok = mask.ndim == 4 and mask.shape[1] == 1 and mask.is_floating_point()
    if ok and image is not None:
        ok = mask.shape[0] == image.shape[0] and mask.shape[-2:] == image.shape[-2:]
    if not ok:
        against = f" for images {tuple(image.shape)}" if image is not None else ""
        raise ValueError(
            f"{name} must be a float (B, 1, H, W) 0/1 mask{against}, got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )
    return mask


@torch.no_grad()
def mask_boxes(mask: Tensor) -> Tensor:
    """The bounding box of each mask, (B, 4) long (x0, y0, x1, y1), inclusive pixel indices.

    The box of ``torchvision.ops.masks_to_boxes`` (pixels > 0.5 count as inside). An empty mask
    gets the whole image (0, 0, W - 1, H - 1) and a warning. No gradient.

    Args:
        mask: (B, 1, H, W) masks.
    """
    check_mask(mask)
    inside = mask[:, 0] > 0.5  # (B, H, W)
    rows, cols = inside.any(dim=2), inside.any(dim=1)  # (B, H), (B, W)
    height, width = inside.shape[-2:]
    empty = ~rows.any(dim=1)  # (B,)
    if empty.any():
        warnings.warn(
            f"empty clothing mask in {int(empty.sum())} of {len(empty)} samples: their box is "
            "the whole image",
            stacklevel=2,
        )
        rows, cols = rows | empty[:, None], cols | empty[:, None]
    y0, x0 = _first(rows), _first(cols)
    y1, x1 = height - 1 - _first(rows.flip(1)), width - 1 - _first(cols.flip(1))
    return torch.stack([x0, y0, x1, y1], dim=1)


def _first(flags: Tensor) -> Tensor:
    """Index of the first True of each row of a (B, N) bool tensor that has one."""
    return flags.to(torch.uint8).argmax(dim=1)


def white_fill(image: Tensor, mask: Tensor) -> Tensor:
    """I m + 1 (1 - m): the item inside the mask on white ([-1, 1] images), e.g. I_A^m."""
    check_mask(mask, image)
    return image * mask + (1 - mask)


def remove_item(image: Tensor, mask: Tensor) -> Tensor:
    """I (1 - m): the context C_A, the image with the masked item set to 0 (mid-gray)."""
    check_mask(mask, image)
    return image * (1 - mask)
