"""Region and detail metrics of the exemplar twin (spec hallucination.md section 9, H2-H6).

The twin hides its identity detail in a few boxes of the face (``regions``: (B, R, 4) boxes
``(top, left, height, width)`` in pixels of the HR image the batch holds, whatever its size) as
zero-sum patterns on 4 x 4 tiles, invisible at low resolution. What exemplars add is therefore
measured inside those boxes only, on the image minus its 4 x 4-tile mean (``detail_part``):

- ``region_mask``: the boxes as a (B, 1, S, S) 0/1 mask;
- ``region_psnr``: per-image PSNR over the region pixels, 10 log10(1 / MSE) on [0, 1] RGB;
- ``detail_ncc``: per-image normalised cross-correlation of two images' detail parts inside the
  regions (does the output carry this pattern?);
- ``occluded_weight``: the mean PWAVE weight that fell on occluded exemplar regions (H5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.image_quality.psnr import psnr_of_mse

__all__ = ["TILE", "detail_ncc", "detail_part", "occluded_weight", "region_mask", "region_psnr"]

TILE = 4  # the twin's patterns sum to zero on every 4 x 4 tile


def _boxes_mask(boxes: Tensor, size: int) -> Tensor:
    """bool (N, S, S): the union of each row's boxes ``boxes`` (N, R, 4)."""
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, R, 4) (top, left, height, width), got {boxes.shape}")
    grid = torch.arange(size, device=boxes.device)
    top, left, height, width = (boxes[..., k, None] for k in range(4))  # (N, R, 1)
    rows = (grid >= top) & (grid < top + height)  # (N, R, S)
    cols = (grid >= left) & (grid < left + width)
    return (rows[..., :, None] & cols[..., None, :]).any(dim=1)


def region_mask(boxes: Tensor, size: int) -> Tensor:
    """float (B, 1, S, S): 1 inside any of the image's boxes ``boxes`` (B, R, 4), else 0."""
    return _boxes_mask(boxes, size)[:, None].float()


def _masked(images: Tensor, boxes: Tensor) -> Tensor:
    """(B, 1, S, S) mask of ``boxes`` for square ``images`` (B, C, S, S); refuses empty regions."""
    size = images.shape[-1]
    if images.shape[-2] != size:
        raise ValueError(f"region metrics need square images, got {tuple(images.shape)}")
    mask = region_mask(boxes.to(images.device), size)
    if (mask.flatten(1).sum(1) == 0).any():
        raise ValueError("an image has no region pixel inside its boxes (boxes outside the image?)")
    return mask


def region_psnr(sr: Tensor, hr: Tensor, boxes: Tensor) -> Tensor:
    """(B,) PSNR (dB) of ``sr`` against ``hr`` (B, 3, S, S) in [0, 1] over the pixels of each
    image's boxes only: 10 log10(1 / MSE), MSE over those pixels and the channels (+inf when
    equal, as ``callbacks.image_quality.psnr``)."""
    mask = _masked(hr, boxes)
    error = ((sr.float() - hr.float()) ** 2 * mask).flatten(1).sum(1)
    mse = error / (mask.flatten(1).sum(1) * hr.shape[1])
    return psnr_of_mse(mse, 1.0)


def detail_part(images: Tensor) -> Tensor:
    """``images`` (B, C, S, S) minus their 4 x 4-tile mean (average-pooled, nearest-upsampled):
    the part the twin's detail patterns live in, which no 4 x 4 (or coarser) average shows."""
    if images.shape[-1] % TILE or images.shape[-2] % TILE:
        raise ValueError(f"detail_part: sides must be multiples of {TILE}, got {images.shape}")
    means = F.avg_pool2d(images.float(), TILE)
    return images.float() - F.interpolate(means, scale_factor=TILE, mode="nearest")


def detail_ncc(a: Tensor, b: Tensor, boxes: Tensor, flat: float = 1e-12) -> Tensor:
    """(B,) normalised cross-correlation of ``detail_part(a)`` and ``detail_part(b)`` over the
    region pixels and channels of each image (each mean-centred there); 0 where one is flat (mean
    square at most ``flat``: float rounding of a tile-constant image)."""
    mask = _masked(a, boxes).expand_as(a).bool()
    da, db = detail_part(a), detail_part(b)
    values = []
    for x, y, inside in zip(da, db, mask, strict=True):
        x, y = x[inside], y[inside]
        x, y = x - x.mean(), y - y.mean()
        if min(x.square().mean(), y.square().mean()) <= flat:
            values.append(x.new_zeros(()))
            continue
        values.append((x * y).sum() / (x.square().sum() * y.square().sum()).sqrt())
    return torch.stack(values)


def occluded_weight(
    weights: Tensor, exemplar_regions: Tensor, occluded: Tensor, hr_size: int
) -> Tensor:
    """(B,) mean PWAVE weight over the occluded (exemplar, region) pixels of each image.

    Args:
        weights: W (B, m, 1, h, h) at one scale; nearest-upsampled to ``hr_size`` first.
        exemplar_regions: (B, m, R, 4) each exemplar's region boxes in HR pixels.
        occluded: bool (B, m, R), which (exemplar, region) was occluded.
        hr_size: Side of the HR images the boxes refer to.

    Returns:
        The mean of W over every pixel of every occluded (exemplar, region) of the image; NaN for an
        image with none occluded (``nanmean`` over images then skips it).
    """
    b, m = weights.shape[:2]
    if exemplar_regions.shape[:2] != (b, m) or occluded.shape != exemplar_regions.shape[:3]:
        raise ValueError(
            f"occluded_weight: W {tuple(weights.shape)}, boxes {tuple(exemplar_regions.shape)} "
            f"and occluded {tuple(occluded.shape)} disagree on (B, m, R)"
        )
    if hr_size % weights.shape[-1]:
        raise ValueError(f"HR size {hr_size} is not a multiple of W's side {weights.shape[-1]}")
    up = F.interpolate(weights.flatten(0, 1).float(), size=(hr_size, hr_size), mode="nearest")
    up = up.view(b, m, hr_size, hr_size)
    # keep only the occluded boxes (zero-sized boxes are in no mask)
    kept = exemplar_regions.to(weights.device) * occluded.to(weights.device)[..., None]
    mask = _boxes_mask(kept.flatten(0, 1), hr_size).view(b, m, hr_size, hr_size).float()
    count = mask.flatten(1).sum(1)
    total = (up * mask).flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
