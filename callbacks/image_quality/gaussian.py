"""The gaussian window of SSIM and its separable "valid" filtering of image batches, in torch.

SSIM's local statistics are gaussian-weighted means over an 11 x 11 window (sigma 1.5), taken
only where the whole window lies inside the image: an (H, W) map gives an
(H - 10, W - 10) map. This is the region scikit-image's ``structural_similarity`` averages
(it filters with reflected borders, then crops ``(win_size - 1) // 2`` pixels on every side).

The filter is separable: one 1-D pass along the width, one along the height. Each pass is a
product with a banded (Toeplitz) matrix holding the window, which is the same sum as a 1-D
convolution but runs as a matrix product: on a CPU, ``conv2d`` with one channel and a float64
kernel is several times slower than the product at the sizes of face crops, and on a GPU the
product runs in float64 without TF32 rounding. Sides longer than ``BLOCK + size - 1`` are cut
into overlapping blocks, so the matrix and the work per pixel stay bounded on large images.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gaussian_window", "valid_gaussian_filter"]

#: Output pixels per block of a long row (the banded matrix is (BLOCK + size - 1, BLOCK)).
BLOCK = 256


def gaussian_window(
    size: int = 11,
    sigma: float = 1.5,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The normalized 1-D gaussian ``exp(-x^2 / (2 sigma^2))``, ``x = -(size // 2) .. size // 2``.

    With ``size = 2 * int(3.5 * sigma + 0.5) + 1`` (11 for sigma 1.5) it is the kernel of
    ``scipy.ndimage.gaussian_filter(sigma=sigma, truncate=3.5)``, which scikit-image uses.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the gaussian window size must be odd and positive, got {size}")
    if sigma <= 0:
        raise ValueError(f"the gaussian window sigma must be > 0, got {sigma}")
    x = torch.arange(size, dtype=torch.float64) - size // 2
    window = torch.exp(-0.5 * (x / sigma) ** 2)
    return (window / window.sum()).to(dtype=dtype, device=device)


def _band(length: int, window: Tensor) -> Tensor:
    """(length, length - k + 1): column j holds ``window`` in rows j .. j + k - 1."""
    k = window.numel()
    out = length - k + 1
    rows = torch.arange(length, device=window.device)[:, None]
    shift = rows - torch.arange(out, device=window.device)[None, :]  # row - column
    inside = (shift >= 0) & (shift < k)
    return torch.where(inside, window[shift.clamp(0, k - 1)], window.new_zeros(()))


def _filter_last(x: Tensor, window: Tensor) -> Tensor:
    """Valid 1-D filtering of the last dimension of ``x``: length L becomes L - k + 1."""
    k = window.numel()
    length = x.shape[-1]
    out = length - k + 1
    if out <= BLOCK:
        return x @ _band(length, window)
    blocks = -(-out // BLOCK)
    padded = torch.nn.functional.pad(x, (0, blocks * BLOCK + k - 1 - length))
    pieces = padded.unfold(-1, BLOCK + k - 1, BLOCK)  # (..., blocks, BLOCK + k - 1)
    filtered = pieces @ _band(BLOCK + k - 1, window)  # (..., blocks, BLOCK)
    return filtered.flatten(-2)[..., :out]


def _filter_second_last(x: Tensor, window: Tensor) -> Tensor:
    """Valid 1-D filtering of the second-last dimension of ``x``."""
    length = x.shape[-2]
    if length - window.numel() + 1 <= BLOCK:
        return _band(length, window).T @ x  # no transposed copy of x
    return _filter_last(x.transpose(-1, -2), window).transpose(-1, -2)


def valid_gaussian_filter(x: Tensor, window: Tensor) -> Tensor:
    """Filter the last two dimensions of ``x`` (..., H, W) with ``window`` along both.

    Returns (..., H - k + 1, W - k + 1): the weighted means of every full k x k window, in the
    dtype and on the device of ``x`` (``window`` must match them).
    """
    k = window.numel()
    if x.shape[-1] < k or x.shape[-2] < k:
        raise ValueError(
            f"a {k} x {k} window does not fit in images of {x.shape[-2]} x {x.shape[-1]} px"
        )
    return _filter_second_last(_filter_last(x, window), window)
