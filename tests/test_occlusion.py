"""The OLR occlusion: one rectangle per image, sides within the fractions, fully inside, seeded."""

from __future__ import annotations

import pytest
import torch

from datamodules.occlusion import occlude, occlusion_box, side_range


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("height", "width"), [(178, 178), (46, 46), (46, 90), (100, 37)])
def test_boxes_within_fractions_and_inside(height, width):
    g = generator()
    boxes = torch.stack([occlusion_box(height, width, g) for _ in range(2000)])
    top, left, box_h, box_w = boxes.unbind(1)
    assert boxes.dtype == torch.long
    assert (box_h >= 0.33 * height).all() and (box_h <= 0.66 * height).all()
    assert (box_w >= 0.33 * width).all() and (box_w <= 0.66 * width).all()
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + box_h <= height).all() and (left + box_w <= width).all()
    # Every whole side length and every position is reached (uniform draws, not a fixed box).
    low, high = side_range(height, 0.33, 0.66)
    assert set(box_h.tolist()) == set(range(low, high + 1))
    assert top.min() == 0 and (top + box_h).max() == height
    assert left.min() == 0 and (left + box_w).max() == width
    # Height and width are drawn independently.
    assert abs(torch.corrcoef(torch.stack([box_h, box_w]).float())[0, 1]) < 0.1


def test_side_range_is_the_whole_lengths_inside_the_fractions():
    assert side_range(100, 0.33, 0.66) == (33, 66)
    assert side_range(178, 0.33, 0.66) == (59, 117)  # 58.74 .. 117.48
    assert side_range(46, 0.33, 0.66) == (16, 30)  # 15.18 .. 30.36
    assert side_range(10, 0.5, 0.5) == (5, 5)


def test_occlude_fills_the_box_and_leaves_the_rest():
    image = torch.rand(3, 46, 50, generator=generator(1)) + 0.1  # no pixel is 0 before
    before = image.clone()
    occluded, box = occlude(image, generator(2), fill=0.0)
    top, left, h, w = box.tolist()
    inside = torch.zeros(46, 50, dtype=torch.bool)
    inside[top : top + h, left : left + w] = True
    assert torch.equal(image, before)  # the input is not changed
    assert occluded.shape == image.shape and occluded.dtype == image.dtype
    assert (occluded[:, inside] == 0).all()
    assert torch.equal(occluded[:, ~inside], image[:, ~inside])
    filled, _ = occlude(image, generator(2), fill=0.5)
    assert (filled[:, inside] == 0.5).all()


def test_same_seed_same_box_and_no_global_rng():
    image = torch.rand(3, 46, 46)
    torch.manual_seed(0)
    first = occlude(image, generator(7))
    torch.manual_seed(1)  # the global generator plays no part
    second = occlude(image, generator(7))
    assert torch.equal(first[1], second[1]) and torch.equal(first[0], second[0])
    state = torch.get_rng_state()
    occlude(image, generator(8))
    assert torch.equal(state, torch.get_rng_state())
    boxes = {tuple(occlusion_box(46, 46, generator(s)).tolist()) for s in range(20)}
    assert len(boxes) > 15


@pytest.mark.parametrize(("low", "high"), [(0.0, 0.5), (0.7, 0.6), (0.5, 1.2), (-0.1, 0.3)])
def test_bad_fractions_are_refused(low, high):
    with pytest.raises(ValueError, match="0 < min_fraction <= max_fraction <= 1"):
        occlusion_box(46, 46, generator(), low, high)


def test_image_too_small_for_the_fractions():
    with pytest.raises(ValueError, match="side of 2 px has no whole length"):
        occlusion_box(2, 46, generator(), 0.6, 0.7)
