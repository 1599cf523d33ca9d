"""A fixed random convolutional feature extractor: FID's features where no Inception exists.

The synthetic twins have no trained feature network, and the FID Inception is too slow for a
2-core CPU at every epoch. ``RandomConvFeatures`` is a small convolutional network whose weights
come from a seed and never train: conv 3x3 stride 2 -> ReLU blocks, then global average and
standard-deviation pooling of the last map, giving ``num_features`` numbers per image. Random
convolutional features keep enough of the image statistics that the Frechet distance between two
image sets falls as the sets become alike, so the trend of a generator's FID over training is
measurable; the values are not comparable with Inception FIDs and are reported under their own
fingerprint. Inputs are (B, 3, H, W) floats in [0, 1] (``LogFID``'s contract), H, W >= 16.

Used as ``callbacks.fid.LogFID(extractor=...)``::

    - class_path: callbacks.fid.LogFID
      init_args:
        extractor: {class_path: callbacks.generative.random_features.RandomConvFeatures}
        dataset: synthetic-faces-small-64
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RandomConvFeatures"]


class RandomConvFeatures(nn.Module):
    """Seeded random conv features: ``depth`` x [conv 3x3 stride 2 -> ReLU], mean + std pooled.

    Args:
        width: Channels of every conv layer; ``num_features`` is ``2 * width``.
        depth: Number of stride-2 conv layers.
        seed: Seed of the weights (Kaiming-normal for ReLU, zero bias).
    """

    def __init__(self, width: int = 64, depth: int = 4, seed: int = 0) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width} and {depth}")
        generator = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        channels = 3
        for _ in range(depth):
            conv = nn.Conv2d(channels, width, 3, stride=2, padding=1)
            std = (2.0 / (channels * 9)) ** 0.5
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            channels = width
        self.net = nn.Sequential(*layers).requires_grad_(False).eval()
        self.num_features = 2 * width
        self.fingerprint = f"random-conv:w{width}-d{depth}-s{seed}"

    def train(self, mode: bool = True) -> RandomConvFeatures:
        """Stays in eval mode (nothing to train)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:  # (B, 3, H, W) in [0, 1] -> (B, 2 * width)
        if images.ndim != 4 or images.shape[1] != 3 or min(images.shape[-2:]) < 16:
            raise ValueError(
                f"expected (B, 3, H, W) images with H, W >= 16, got {tuple(images.shape)}"
            )
        maps = self.net(images.float() * 2 - 1).flatten(2)
        return torch.cat([maps.mean(-1), maps.std(-1)], dim=1)
