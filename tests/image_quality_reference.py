"""Reference values for the image-quality tests: scikit-image per image, and test images.

``reference_ms_ssim`` builds MS-SSIM from scikit-image alone: the contrast-structure term of a
scale is ``structural_similarity`` with a huge K1 (C1 = (K1 R)^2 makes the luminance factor 1
to within 1e-12), the last scale's term is the plain SSIM, and scales are 2 x 2 means (an odd
side repeats its last row/column). The tests check it against pytorch-msssim where that works.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
HUGE_K1 = 1e6


def _ssim_2d(a: np.ndarray, b: np.ndarray, data_range: float, k1: float = 0.01) -> float:
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        K1=k1,
    )


def skimage_ssim(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    """scikit-image SSIM of each image; grey images as 2-D arrays, colour with ``channel_axis``."""
    values = []
    for p, t in zip(preds.double().numpy(), target.double().numpy(), strict=True):
        if p.shape[0] == 1:
            values.append(_ssim_2d(t[0], p[0], data_range))
        else:
            values.append(
                structural_similarity(
                    t,
                    p,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=data_range,
                    channel_axis=0,
                )
            )
    return np.array(values)


def skimage_psnr(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    """scikit-image PSNR of each image (``inf`` for an image equal to its target)."""
    with np.errstate(divide="ignore"):
        return np.array(
            [
                peak_signal_noise_ratio(t, p, data_range=data_range)
                for p, t in zip(preds.double().numpy(), target.double().numpy(), strict=True)
            ]
        )


def _halve(a: np.ndarray) -> np.ndarray:
    a = np.pad(a, ((0, a.shape[0] % 2), (0, a.shape[1] % 2)), mode="edge")
    return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3))


def reference_ms_ssim(
    preds: torch.Tensor, target: torch.Tensor, data_range: float, scales: int
) -> np.ndarray:
    """MS-SSIM of each image; fewer than five scales take the first weights renormalized (the
    five standard weights sum to 1.0001 and are used as they are)."""
    weights = np.array(MS_SSIM_WEIGHTS[:scales])
    if scales < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()
    values = []
    for p, t in zip(preds.double().numpy(), target.double().numpy(), strict=True):
        per_channel = []
        for a, b in zip(t, p, strict=True):
            value = 1.0
            for k, weight in enumerate(weights):
                last = k == scales - 1
                term = _ssim_2d(a, b, data_range, k1=0.01 if last else HUGE_K1)
                value *= max(term, 0.0) ** weight
                a, b = _halve(a), _halve(b)
            per_channel.append(value)
        values.append(np.mean(per_channel))
    return np.array(values)


def _structured(channels: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """One image with smooth gradients, a disk, a checkerboard and stripes, in [0, 1]."""
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"
    )
    layers = []
    for _ in range(channels):
        cx, cy, phase = torch.rand(3, generator=g).tolist()
        disk = (((xx - cx) ** 2 + (yy - cy) ** 2) < 0.08).float()
        rows, cols = torch.arange(height)[:, None] // 4, torch.arange(width)[None] // 4
        checker = ((rows + cols) % 2).float()
        stripes = 0.5 + 0.5 * torch.sin(20 * xx + 6.28 * phase)
        layers.append(0.3 * xx + 0.2 * yy + 0.2 * disk + 0.15 * checker + 0.15 * stripes)
    return torch.stack(layers).clamp(0, 1)


def image_pairs(
    channels: int, height: int = 64, width: int = 64, seed: int = 0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{family: (preds, target)}``, 4 float32 images (4, C, H, W) in [0, 1] per family.

    - ``random``: uniform noise targets, predictions with added noise;
    - ``structured``: edges, disks, stripes; predictions shifted by a pixel, dimmed, noisy;
    - ``constant``: constant targets against the same constant (identical), another
      constant, noise around the constant, and a structured image.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (4, channels, height, width)
    noise = torch.randn(shape, generator=g)
    target = torch.rand(shape, generator=g)
    random = ((target + 0.15 * noise).clamp(0, 1), target)
    target = torch.stack([_structured(channels, height, width, g) for _ in range(4)])
    shifted = 0.9 * torch.roll(target, shifts=(1, 1), dims=(2, 3)) + 0.02 * noise
    structured = (shifted.clamp(0, 1), target)
    levels = torch.tensor([0.5, 0.0, 0.8, 0.3]).view(4, 1, 1, 1)
    target = levels.expand(shape).clone()
    preds = target.clone()
    preds[1] = 0.25
    preds[2] = (target[2] + 0.05 * noise[2]).clamp(0, 1)
    preds[3] = _structured(channels, height, width, g)
    return {"random": random, "structured": structured, "constant": (preds, target)}
