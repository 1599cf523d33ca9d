"""Random rectangular occlusion (OLR): one filled rectangle per image, fully inside it.

The rectangle's height is drawn uniformly among the whole pixel counts in
``[min_fraction * H, max_fraction * H]`` and its width independently among those in
``[min_fraction * W, max_fraction * W]`` (the discrete form of ``U[a, b] * H``, so the side always
lies within the fractions); its top-left corner is uniform over the positions that keep it inside
the image. Every draw comes from the ``torch.Generator`` passed in (no global random state), so a
seeded generator gives the same box on every process and worker.

Boxes are long tensors ``(top, left, height, width)`` in pixels of the image they were drawn for.
"""

from __future__ import annotations

import math

import torch

MIN_FRACTION = 0.33  # OLR: side ~ U[0.33, 0.66] of the image side
MAX_FRACTION = 0.66


def check_fractions(min_fraction: float, max_fraction: float) -> None:
    """Raise ``ValueError`` unless ``0 < min_fraction <= max_fraction <= 1``."""
    if not 0.0 < min_fraction <= max_fraction <= 1.0:
        raise ValueError(
            "occlusion side fractions must satisfy 0 < min_fraction <= max_fraction <= 1, "
            f"got min_fraction={min_fraction}, max_fraction={max_fraction}"
        )


def side_range(side: int, min_fraction: float, max_fraction: float) -> tuple[int, int]:
    """Smallest and largest whole side length in ``[min_fraction * side, max_fraction * side]``.

    Raises:
        ValueError: Bad fractions, or no whole length fits (the image is too small).
    """
    check_fractions(min_fraction, max_fraction)
    low = math.ceil(round(min_fraction * side, 9))  # round: 0.33 * 100 must give 33, not 34
    high = math.floor(round(max_fraction * side, 9))
    if low > high:
        raise ValueError(
            f"an image side of {side} px has no whole length in "
            f"[{min_fraction}, {max_fraction}] x {side}: use larger images or wider fractions"
        )
    return low, high


def occlusion_box(
    height: int,
    width: int,
    generator: torch.Generator,
    min_fraction: float = MIN_FRACTION,
    max_fraction: float = MAX_FRACTION,
) -> torch.Tensor:
    """Draw one rectangle inside a ``height`` x ``width`` image.

    Returns:
        long (4,): ``(top, left, box_height, box_width)``.
    """
    h_low, h_high = side_range(height, min_fraction, max_fraction)
    w_low, w_high = side_range(width, min_fraction, max_fraction)
    box_h = _uniform_int(h_low, h_high, generator)
    box_w = _uniform_int(w_low, w_high, generator)
    top = _uniform_int(0, height - box_h, generator)
    left = _uniform_int(0, width - box_w, generator)
    return torch.tensor([top, left, box_h, box_w], dtype=torch.long)


def occlude(
    image: torch.Tensor,
    generator: torch.Generator,
    min_fraction: float = MIN_FRACTION,
    max_fraction: float = MAX_FRACTION,
    fill: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of ``image`` (..., H, W) with one random rectangle set to ``fill`` in every channel.

    Returns:
        ``(occluded image, box)``: the image keeps shape and dtype; ``box`` is long (4,)
        ``(top, left, height, width)``. ``image`` itself is not changed.
    """
    height, width = image.shape[-2:]
    box = occlusion_box(height, width, generator, min_fraction, max_fraction)
    top, left, box_h, box_w = box.tolist()
    occluded = image.clone()
    occluded[..., top : top + box_h, left : left + box_w] = fill
    return occluded, box


def _uniform_int(low: int, high: int, generator: torch.Generator) -> int:
    """One integer uniform on ``[low, high]`` (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))
