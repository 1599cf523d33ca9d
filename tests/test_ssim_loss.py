"""``components.ssim_loss``: the differentiable float32 SSIM equals the float64 metric and
scikit-image's ``structural_similarity`` (through ``tests/image_quality_reference.py``)."""

from __future__ import annotations

import numpy as np
import torch
from image_quality_reference import skimage_ssim

from callbacks.image_quality.ssim import ssim
from lightning_modules.components.ssim_loss import ssim_float32


def test_ssim_float32_equals_the_metric_and_scikit_image_and_differentiates():
    torch.manual_seed(0)
    target = torch.rand(3, 3, 44, 44)
    preds = (target + 0.2 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    value = ssim_float32(preds, target)
    assert value.dtype == torch.float32 and value.shape == (3,)
    np.testing.assert_allclose(value.detach().numpy(), ssim(preds.detach(), target), atol=1e-5)
    np.testing.assert_allclose(
        value.detach().numpy(), skimage_ssim(preds.detach(), target), atol=1e-5
    )
    value.sum().backward()
    assert torch.isfinite(preds.grad).all() and preds.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim_float32(preds.detach(), target)
    assert mixed.dtype == torch.float32
    np.testing.assert_allclose(mixed.numpy(), value.detach().numpy(), atol=1e-6)
