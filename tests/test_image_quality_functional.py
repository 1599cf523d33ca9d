"""SSIM, MS-SSIM and PSNR per image against scikit-image and pytorch-msssim."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from image_quality_reference import (
    image_pairs,
    reference_ms_ssim,
    skimage_psnr,
    skimage_ssim,
)
from pytorch_msssim import ms_ssim as msssim_reference
from pytorch_msssim.ssim import _fspecial_gauss_1d

import callbacks.image_quality.ssim as ssim_module
from callbacks.image_quality.gaussian import gaussian_window, valid_gaussian_filter
from callbacks.image_quality.ms_ssim import (
    ms_ssim,
    ms_ssim_scales,
    ms_ssim_weights,
    ssim_and_ms_ssim,
)
from callbacks.image_quality.psnr import psnr
from callbacks.image_quality.ssim import ssim

FAMILIES = ["random", "structured", "constant"]
# square, smallest, odd and non-square, and sides long enough for the blocked filter path
SIZES = [(64, 64), (11, 11), (37, 150), (40, 300)]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_ssim_equals_skimage(channels, size):
    for family, (preds, target) in image_pairs(channels, *size).items():
        expected = skimage_ssim(preds, target)
        np.testing.assert_allclose(ssim(preds, target).numpy(), expected, atol=1e-5, err_msg=family)


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_equals_skimage_identical_images_are_inf(channels):
    for family, (preds, target) in image_pairs(channels).items():
        np.testing.assert_allclose(
            psnr(preds, target).numpy(), skimage_psnr(preds, target), atol=1e-6, err_msg=family
        )
    preds, target = image_pairs(channels)["constant"]
    assert psnr(preds, target)[0].item() == np.inf == skimage_psnr(preds, target)[0]


def test_ssim_and_psnr_use_the_data_range():
    preds, target = image_pairs(3)["structured"]
    for scale, offset in ((255.0, 0.0), (2.0, -1.0)):
        p, t = preds * scale + offset, target * scale + offset
        np.testing.assert_allclose(
            ssim(p, t, data_range=scale).numpy(), skimage_ssim(p, t, scale), atol=1e-5
        )
        np.testing.assert_allclose(
            psnr(p, t, data_range=scale).numpy(), skimage_psnr(p, t, scale), atol=1e-6
        )


def test_gaussian_window_is_scipy_kernel_and_filter_is_valid_convolution():
    window = gaussian_window(11, 1.5)
    x = torch.arange(-5, 6, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * 1.5**2))
    torch.testing.assert_close(window, kernel / kernel.sum(), rtol=0, atol=1e-15)
    images = torch.rand(1, 2, 280, 300, dtype=torch.float64)  # both passes take the blocked path
    kernel2d = (window[:, None] * window[None, :]).expand(2, 1, 11, 11)
    expected = torch.nn.functional.conv2d(images, kernel2d, groups=2)
    torch.testing.assert_close(valid_gaussian_filter(images, window), expected)


@pytest.mark.parametrize("shape", [(2, 3, 176, 208), (2, 1, 192, 192)])
def test_ms_ssim_equals_pytorch_msssim(shape, monkeypatch):
    g = torch.Generator().manual_seed(3)
    target = torch.rand(shape, generator=g, dtype=torch.float64)
    preds = (target + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    theirs = msssim_reference(preds, target, data_range=1.0, size_average=False)
    np.testing.assert_allclose(ms_ssim(preds, target).numpy(), theirs.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        ms_ssim(preds, target).numpy(), reference_ms_ssim(preds, target, 1.0, 5), atol=1e-10
    )
    # the remaining difference is pytorch-msssim's float32 window: with it, rounding only
    own_window = _fspecial_gauss_1d(11, 1.5).view(-1).double()
    monkeypatch.setattr(ssim_module, "gaussian_window", lambda *a, **k: own_window)
    np.testing.assert_allclose(ms_ssim(preds, target).numpy(), theirs.numpy(), atol=1e-12)


def test_ms_ssim_with_data_range_255_equals_pytorch_msssim():
    g = torch.Generator().manual_seed(4)
    target = torch.rand(2, 3, 176, 176, generator=g, dtype=torch.float64) * 255
    noise = torch.randn(target.shape, generator=g, dtype=torch.float64)
    preds = (target + 20 * noise).clamp(0, 255)
    theirs = msssim_reference(preds, target, data_range=255.0, size_average=False)
    np.testing.assert_allclose(ms_ssim(preds, target, data_range=255.0), theirs, atol=1e-5)


def test_scales_that_fit_the_window():
    assert [ms_ssim_scales(s, s) for s in (10, 11, 21, 22, 64, 128, 160, 161, 500)] == [
        0, 1, 2, 2, 3, 4, 4, 5, 5,
    ]  # fmt: skip
    assert ms_ssim_scales(64, 200) == ms_ssim_scales(200, 64) == 3  # the smaller side decides
    assert ms_ssim_weights(5) == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    assert sum(ms_ssim_weights(3)) == pytest.approx(1.0, abs=1e-15)
    assert ms_ssim_weights(3)[0] == pytest.approx(0.0448 / (0.0448 + 0.2856 + 0.3001))


@pytest.mark.parametrize(("channels", "size", "scales"), [(3, 64, 3), (1, 128, 4), (3, 75, 3)])
def test_small_images_get_fewer_scales_with_a_warning(channels, size, scales):
    for family, (preds, target) in image_pairs(channels, size, size).items():
        with pytest.warns(UserWarning, match=f"uses {scales} of 5 scales") as caught:
            value = ms_ssim(preds, target)
        assert len(caught) == 1 and "\n" not in str(caught[0].message)
        expected = reference_ms_ssim(preds, target, 1.0, scales)
        np.testing.assert_allclose(value.numpy(), expected, atol=1e-10, err_msg=family)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit number of scales: no warning
        ms_ssim(preds, target, scales=scales)


def test_ms_ssim_refuses_what_does_not_fit():
    images = torch.rand(1, 1, 64, 64)
    with pytest.raises(ValueError, match="5 scales needs larger images than 64 x 64"):
        ms_ssim(images, images, scales=5)
    small = torch.rand(1, 1, 10, 30)
    with pytest.raises(ValueError, match="at least 11 x 11 px, got 10 x 30"):
        ms_ssim(small, small)
    with pytest.raises(ValueError, match="does not fit in images of 10 x 30"):
        ssim(small, small)


def test_ssim_and_ms_ssim_share_the_full_scale():
    preds, target = image_pairs(3)["structured"]
    x, y = preds.double(), target.double()
    structural, multiscale = ssim_and_ms_ssim(x, y, 1.0, 3)
    torch.testing.assert_close(structural, ssim(preds, target), rtol=0, atol=1e-15)
    torch.testing.assert_close(multiscale, ms_ssim(preds, target, scales=3), rtol=0, atol=1e-15)


def test_results_do_not_depend_on_the_chunking(monkeypatch):
    preds, target = image_pairs(3)["random"]
    whole = ms_ssim(preds, target, scales=3)
    monkeypatch.setattr(ssim_module, "CPU_CHUNK_VALUES", 1)  # one image per chunk
    torch.testing.assert_close(ms_ssim(preds, target, scales=3), whole, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("preds", "target", "data_range", "match"),
    [
        (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 17), 1.0, "differ in shape"),
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), 1.0, r"must be images \(N, C, H, W\)"),
        (torch.zeros(1, 1, 16, 16, dtype=torch.uint8),) * 2 + (255.0, "are torch.uint8"),
        (torch.full((1, 1, 16, 16), float("nan")), torch.rand(1, 1, 16, 16), 1.0, "NaN"),
        (torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16) * 255, 1.0, "more than data_range=1"),
        (torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), 0.0, "data_range must be"),
    ],
)
def test_bad_inputs_are_refused(preds, target, data_range, match):
    for metric in (ssim, ms_ssim, psnr):
        with pytest.raises(ValueError, match=match):
            metric(preds, target, data_range=data_range)
