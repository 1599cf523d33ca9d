"""UST's networks (spec ``ust`` sections 3 and 9, CPU unit tests): the clothing mask's boxes
and the Fit-in module, its batched paste against the spec's per-sample ``interpolate`` loop.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from lightning_modules.ust import (
    FitIn,
    mask_boxes,
    paste_into_boxes,
    remove_item,
    white_fill,
)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _box_mask(batch: int, size: tuple[int, int], boxes: list[tuple[int, int, int, int]]):
    """(B, 1, H, W) masks, each a filled box (x0, y0, x1, y1 inclusive) with a hole inside."""
    mask = torch.zeros(batch, 1, *size)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        mask[i, 0, y0 : y1 + 1, x0 : x1 + 1] = 1
        mask[i, 0, (y0 + y1) // 2, (x0 + x1) // 2] = 0  # the box is the mask's, not its fill
    return mask


def _person(batch: int = 2, size: tuple[int, int] = (64, 48), seed: int = 0):
    """Images, clothing masks (boxes) and contexts of ``batch`` made-up persons."""
    images = torch.rand(batch, 3, *size, generator=_seeded(seed)) * 2 - 1
    h, w = size
    boxes = [(w // 6 + i, h // 5, w - w // 5, h - h // 4 - i) for i in range(batch)]
    mask = _box_mask(batch, size, boxes)
    return images, mask, remove_item(images, mask)


def _paste_loop(features: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]):
    """The spec's per-sample Fit-in paste: the whole map interpolated into the box, 0 outside."""
    out = features.new_zeros(features.shape[0], features.shape[1], *size)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        box = (y1 - y0 + 1, x1 - x0 + 1)
        resized = F.interpolate(features[i : i + 1], box, mode="bilinear", align_corners=False)
        out[i, :, y0 : y1 + 1, x0 : x1 + 1] = resized[0]
    return out


# ------------------------------------------------------------------ masks and Fit-in


def test_mask_boxes_are_torchvisions_and_an_empty_mask_takes_the_image():
    mask = (torch.rand(5, 1, 64, 48, generator=_seeded()) > 0.97).float()
    torch.testing.assert_close(mask_boxes(mask), masks_to_boxes(mask[:, 0]).long())
    mask[2] = 0
    with pytest.warns(UserWarning, match="empty clothing mask in 1 of 5"):
        boxes = mask_boxes(mask)
    assert boxes[2].tolist() == [0, 0, 47, 63]
    assert boxes.dtype == torch.long


def test_fit_in_paste_on_a_known_mask():
    """A 6 x 4 box at (x0, y0) = (5, 10) of a 24 x 16 canvas receives the whole 8 x 6 map."""
    features = torch.randn(1, 2, 8, 6, generator=_seeded())
    mask = _box_mask(1, (24, 16), [(5, 10, 8, 15)])
    boxes = mask_boxes(mask)
    assert boxes.tolist() == [[5, 10, 8, 15]]
    pasted = paste_into_boxes(features, boxes, (24, 16))
    outside = torch.ones(24, 16, dtype=torch.bool)
    outside[10:16, 5:9] = False
    assert (pasted[..., outside] == 0).all()
    expected = F.interpolate(features, (6, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pasted[..., 10:16, 5:9], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_batched_paste_equals_the_per_sample_loop(seed):
    """Random boxes (1-pixel ones and whole-canvas ones included), shrinking and stretching."""
    gen = _seeded(seed)
    batch, (height, width), (h, w) = 6, (64, 48), (40 + 20 * seed, 12 + 30 * seed)
    corners = torch.stack(
        [
            torch.randint(0, width, (batch,), generator=gen),
            torch.randint(0, height, (batch,), generator=gen),
        ],
        1,
    )
    ends = torch.stack(
        [
            torch.randint(0, width, (batch,), generator=gen).maximum(corners[:, 0]),
            torch.randint(0, height, (batch,), generator=gen).maximum(corners[:, 1]),
        ],
        1,
    )
    boxes = torch.cat([corners, ends], 1)
    boxes[0] = torch.tensor([7, 9, 7, 9])  # one pixel
    boxes[1] = torch.tensor([0, 0, width - 1, height - 1])  # the whole canvas
    features = torch.randn(batch, 5, h, w, generator=gen) * 3
    torch.testing.assert_close(
        paste_into_boxes(features, boxes, (height, width)),
        _paste_loop(features, boxes, (height, width)),
        rtol=0,
        atol=1e-5,
    )


def test_fit_in_output_and_gradients():
    """Fit-in reads the box and the context, lets no gradient reach the mask, and without the
    paste (the W/O Fit-in ablation) reads F alone."""
    torch.manual_seed(0)
    features = torch.randn(2, 8, 64, 48, requires_grad=True)
    images, mask, context = _person()
    mask.requires_grad_(True)
    fit_in = FitIn(feature_channels=8, hidden_channels=8)
    out = fit_in(features, mask, context)
    assert out.shape == (2, 3, 64, 48) and out.abs().max() <= 1
    out.sum().backward()
    assert mask.grad is None and features.grad.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(fit_in(features, mask, -context), out)
        concat = FitIn(feature_channels=8, hidden_channels=8, concat_mask=True)
        assert concat.block[0].in_channels == 8 + 3 + 1
        assert concat(features, mask, context).shape == (2, 3, 64, 48)
        plain = FitIn(feature_channels=8, hidden_channels=8, paste=False)
        assert plain.block[0].in_channels == 8
        torch.testing.assert_close(plain(features, None, None), plain(features, mask, context))
    with pytest.raises(ValueError, match="needs the target's mask and context"):
        fit_in(features, None, context)


def test_item_view_and_context():
    images, mask, context = _person()
    view = white_fill(images, mask)
    assert (view[mask.expand_as(view) == 0] == 1).all()
    assert (context[mask.expand_as(context) == 1] == 0).all()
    torch.testing.assert_close(view[mask.expand_as(view) == 1], images[mask.expand_as(view) == 1])
    with pytest.raises(ValueError, match=r"float \(B, 1, H, W\) 0/1 mask for images"):
        white_fill(images, mask[:, 0])
