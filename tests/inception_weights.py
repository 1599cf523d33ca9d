"""A weights file for the FID Inception whose features are spread out, without the real file.

A randomly initialised Inception has batch-norm statistics (mean 0, variance 1) that do not fit
its activations, so its pool features collapse to nearly one point. Calibrating those statistics
on a few images (train mode, cumulative averages) gives features that vary from image to image,
so FIDs between different image families are far above 1. The file is laid out as
torch-fidelity's (its ``FeatureExtractorInceptionV3`` state dict), so torchmetrics reads it too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_modules.components.inception import FIDInceptionV3


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """``n`` colour images in [0, 1]: bicubic upsamplings of random 4 x 4 patterns."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=generator)
    up = nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return up.clamp(0, 1)


def noise_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """``n`` colour images of uniform noise in [0, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def write_calibrated_weights(folder: Path) -> Path:
    """``folder / calibrated-inception.pth``: a random Inception with calibrated batch-norm
    statistics (not named as the real file, which the manifest's checksum would refuse)."""
    extractor = FIDInceptionV3(random_weights=True, seed=0)
    network = extractor.network
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: the statistics of the images below
            module.reset_running_stats()
    network.train()
    extractor(torch.cat([smooth_images(4, seed=100), noise_images(4, seed=101)]))
    network.eval()
    path = Path(folder) / "calibrated-inception.pth"
    torch.save(network.state_dict(), path)
    return path
