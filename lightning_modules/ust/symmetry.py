"""UST's symmetry loss, thesis Eq. 4.7, on the take-off output I_AB (catalog items are left-right
mirror symmetric).

Eq. 4.7: L_Sym = E[ 1 / (W/2 x H) sum_{w=1}^{W/2} sum_{h=1}^{H} || I^{w,h} - I^{W-(w-1),h} ||_1 ],
the L1 norm summing the channels: the left half of the image against its mirrored right half
(``symmetry_loss_half``). Over the full width each mirrored pair of columns is counted twice and
the middle column of an odd width is 0 against itself, so the same value is the mean over all
pixels of the per-pixel channel sum |I - flip_W(I)| (``symmetry_loss``, the form training uses;
spec section 4). Both are means over the batch.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["symmetry_loss", "symmetry_loss_half"]


def symmetry_loss(images: Tensor) -> Tensor:
    """Eq. 4.7 in its full-width form: mean over (B, H, W) of sum_c |I - flip_W(I)|.

    Args:
        images: (B, C, H, W).
    """
    return (images - images.flip(-1)).abs().sum(dim=1).mean()


def symmetry_loss_half(images: Tensor) -> Tensor:
    """Eq. 4.7 as printed: the double sum over the left W/2 columns and all rows, / (W/2 x H).

    For an odd width W the middle column is left out of the sum (it mirrors onto itself) and
    W/2 is the real half width.

    Args:
        images: (B, C, H, W).
    """
    height, width = images.shape[-2:]
    half = width // 2
    left, right = images[..., :half], images[..., width - half :].flip(-1)
    per_image = (left - right).abs().sum(dim=(1, 2, 3)) / (width / 2 * height)
    return per_image.mean()
