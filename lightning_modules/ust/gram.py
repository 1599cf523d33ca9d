"""Gram matrices of VGG16 features: the style term of UST's perceptual loss (thesis Eq. 4.6).

"Similar to Gatys et al. and Johnson et al., we use the first convolution layer of all five blocks
in VGG16 to extract the feature maps to calculate the Gram matrix" (section 4.3.3): the features
after the ReLU of conv1_1, conv2_1, conv3_1, conv4_1 and conv5_1, torchvision's
``vgg16().features[1, 6, 11, 18, 25]`` (spec section 4). Images in [-1, 1] are mapped to
[0, 1], then normalised with the ImageNet mean and std; each layer's features F (C x HW) give
G = F F^T / (C H W). ``distance(x, y)`` is the loss term sum_l mean |G_l(x) - G_l(y)|.

Weights, offline: torchvision's ImageNet VGG16 file through the suite's one backbone factory
(``components.backbones.create_backbone``) and manifest (``trunk_weights="vgg16"``, resolved and
checksum-verified by ``components.pretrained.resolve_weights``; a missing file is an error that
names it and the command that gets it). A random trunk only when asked for
(``random_trunk=True``, tests), as ``components.lpips.LPIPS`` does. The network is frozen
(no gradients to its weights, eval mode); gradients flow to the images. Computed in float32 with
autocast off: the Gram sums over H W products would lose their low bits in half precision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.components.backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone
from lightning_modules.components.frozen import freeze
from lightning_modules.components.pretrained import manifest_entry, resolve_weights

__all__ = ["GRAM_LAYERS", "GramVGG16", "gram_matrix"]

#: Indices of torchvision's ``vgg16().features`` whose outputs are used: relu1_1 ... relu5_1.
GRAM_LAYERS: tuple[int, ...] = (1, 6, 11, 18, 25)


def gram_matrix(features: Tensor) -> Tensor:
    """(B, C, H, W) features -> (B, C, C) Gram matrices F F^T / (C H W)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class GramVGG16(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) -> five Gram matrices (B, C_l, C_l), l = 1 .. 5.

    Args:
        trunk_weights: torchvision's ImageNet VGG16 state-dict file: its manifest key
            (``"vgg16"``) or a path; None only with ``random_trunk``.
        random_trunk: A randomly initialised trunk (tests); requires ``trunk_weights=None``, so
            a missing file is never silently replaced.
    """

    def __init__(self, trunk_weights: str | None = "vgg16", random_trunk: bool = False) -> None:
        super().__init__()
        if random_trunk and trunk_weights is not None:
            raise ValueError("GramVGG16: give trunk_weights or random_trunk=True, not both")
        if trunk_weights is None and not random_trunk:
            key = "vgg16"
            raise ValueError(
                f"GramVGG16 needs trunk_weights: {key!r}, the manifest key of torchvision's "
                f"ImageNet file {manifest_entry(key).file} (get it with `make weights DOWNLOAD=1 "
                f"NAMES={key}`), or its path; random_trunk=True for a random trunk (tests only)"
            )
        path = None if trunk_weights is None else str(resolve_weights(trunk_weights))  # fail fast
        features = create_backbone("torchvision/vgg16", weights_file=path).features
        bounds = (0, *(i + 1 for i in GRAM_LAYERS))
        self.blocks = nn.ModuleList(
            features[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        freeze(self)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) in [-1, 1] -> [(B, 64, 64), (B, 128, 128), (B, 256, 256), (B, 512, 512),
        (B, 512, 512)]."""
        with torch.autocast(images.device.type, enabled=False):
            x = ((images.float() + 1) / 2 - self.mean) / self.std
            grams = []
            for block in self.blocks:
                x = block(x)
                grams.append(gram_matrix(x))
        return grams

    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """sum over the five layers of mean |G_l(x) - G_l(y)|: a scalar."""
        pairs = zip(self(x), self(y), strict=True)
        return torch.stack([(gx - gy).abs().mean() for gx, gy in pairs]).sum()
