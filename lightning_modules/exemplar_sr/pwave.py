"""PWAVE, pixel-wise weighted averaging of exemplar features (thesis ch. 6; spec ``hallucination``).

At each of the two fusion scales k (H_LR and 2 H_LR) a weight network WNN-k scores every exemplar
j at every pixel from concat(f_Ex,j^(k), x_k): x_1 = I_LR, x_2 = I'_LR (G_S's output, detached,
so the first loss bracket never reaches G_S). The layers [spec proposal] are Conv3x3 (K + 3 -> 64)
LReLU, Conv3x3 64 -> 64 LReLU, Conv3x3 64 -> 1, sigmoid, giving s_j in (0, 1). The weights are the
scores L1-normalised over the exemplar axis, W_j = s_j / (sum_i s_i + 1e-8) (thesis: "normalized
along the first dimension"; non-negativity from the sigmoid, spec section 8.6), and the fused
feature is f^c_k = sum_j W_j * f_Ex,j^(k).

``fusion="average"`` is the thesis's ablation: W_j = 1/m, no weight networks are built. With m = 0
exemplars the fused features are zero and W is empty, (B, 0, 1, H', H'). ``uniform_weights`` forces
W_j = 1/m at inference on a model trained with learned weights (the analysis's control).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from lightning_modules.components.equalized import EqualizedConv2d
from lightning_modules.exemplar_sr.blocks import conv_lrelu

__all__ = [
    "PWAVE",
    "PWAVEOutput",
    "WeightNet",
    "normalise_weights",
    "uniform_weights",
    "weight_entropy",
]

Fusion = Literal["pwave", "average"]
WEIGHT_EPS = 1e-8


def normalise_weights(scores: Tensor, eps: float = WEIGHT_EPS) -> Tensor:
    """W_j = s_j / (sum_i s_i + eps): scores (B, m, 1, h, w) >= 0 -> weights summing to 1 over m."""
    return scores / (scores.sum(dim=1, keepdim=True) + eps)


def weight_entropy(weights: Tensor) -> Tensor:
    """Mean over samples and pixels of -sum_j W_j log W_j (nats); 0 for m <= 1.

    Args:
        weights: W, (B, m, 1, h, w), non-negative, summing to 1 over m.
    """
    if weights.size(1) == 0:
        return weights.new_zeros(())
    return -torch.special.xlogy(weights, weights).sum(dim=1).mean()


class WeightNet(nn.Module):
    """WNN-k: per-exemplar, per-pixel scores s_j in (0, 1) from exemplar features and an image.

    Args:
        feature_channels: K, channels of the exemplar features.
        hidden_channels: Width of the two hidden convolutions.
        image_channels: Channels of x_k (RGB).
        equalized_lr: Equalized learning rate of every convolution.
    """

    def __init__(
        self,
        feature_channels: int = 128,
        hidden_channels: int = 64,
        image_channels: int = 3,
        equalized_lr: bool = True,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_lrelu(feature_channels + image_channels, hidden_channels, 3, equalized_lr),
            conv_lrelu(hidden_channels, hidden_channels, 3, equalized_lr),
            EqualizedConv2d(hidden_channels, 1, 3, gain=1.0, equalized_lr=equalized_lr),
        )

    def forward(self, features: Tensor, image: Tensor) -> Tensor:
        """features (B, m, K, h, w), image (B, C, h, w) -> scores s (B, m, 1, h, w)."""
        b, m = features.shape[:2]
        image = image.unsqueeze(1).expand(-1, m, -1, -1, -1)  # the same x_k for every exemplar
        x = torch.cat([features, image], dim=2).flatten(0, 1)  # (B * m, K + C, h, w)
        return torch.sigmoid(self.body(x)).unflatten(0, (b, m))


class PWAVEOutput(NamedTuple):
    """What PWAVE gives the ISR trunk and the logs.

    Attributes:
        fused: (f^c_1 (B, K, H_LR, H_LR), f^c_2 (B, K, 2H_LR, 2H_LR)).
        weights: (W at H_LR (B, m, 1, H_LR, H_LR), W at 2 H_LR (B, m, 1, 2H_LR, 2H_LR)).
        entropy: Mean W entropy over both scales (scalar, nats).
    """

    fused: tuple[Tensor, Tensor]
    weights: tuple[Tensor, Tensor]
    entropy: Tensor


class PWAVE(nn.Module):
    """WNN-1 and WNN-2 and the weighted sums of exemplar features at H_LR and 2 H_LR.

    Args:
        feature_channels: K, channels of the exemplar features.
        hidden_channels: Width of each WNN's hidden convolutions.
        fusion: "pwave" (learned weights) or "average" (W_j = 1/m, no weight networks).
        equalized_lr: Equalized learning rate of every convolution.
    """

    def __init__(
        self,
        feature_channels: int = 128,
        hidden_channels: int = 64,
        fusion: Fusion = "pwave",
        equalized_lr: bool = True,
    ) -> None:
        super().__init__()
        if fusion not in ("pwave", "average"):
            raise ValueError(f"fusion must be 'pwave' or 'average', got {fusion!r}")
        self.fusion = fusion
        self.wnns = nn.ModuleList()
        if fusion == "pwave":
            self.wnns.extend(
                WeightNet(feature_channels, hidden_channels, equalized_lr=equalized_lr)
                for _ in range(2)
            )

    def forward(self, features: tuple[Tensor, Tensor], lr: Tensor, lr_prime: Tensor) -> PWAVEOutput:
        """Fuse (f^(1), f^(2)), each (B, m, K, h_k, w_k), guided by I_LR and I'_LR (detached here).

        Args:
            features: Exemplar features at H_LR and 2 H_LR, m >= 0.
            lr: I_LR (B, 3, H_LR, H_LR), x_1.
            lr_prime: I'_LR = G_S(I_LR), (B, 3, 2H_LR, 2H_LR), x_2; detached before WNN-2.
        """
        images = (lr, lr_prime.detach())
        weights = tuple(
            self._weights(k, f, x) for k, (f, x) in enumerate(zip(features, images, strict=True))
        )
        fused = tuple((w * f).sum(dim=1) for w, f in zip(weights, features, strict=True))
        entropy = (weight_entropy(weights[0]) + weight_entropy(weights[1])) / 2
        return PWAVEOutput(fused, weights, entropy)  # type: ignore[arg-type]

    def _weights(self, scale: int, features: Tensor, image: Tensor) -> Tensor:
        """W (B, m, 1, h, w) at one scale."""
        b, m, _, h, w = features.shape
        if image.shape[0] != b or image.shape[-2:] != (h, w):
            raise ValueError(
                f"scale {scale + 1}: image {tuple(image.shape)} does not match exemplar "
                f"features {tuple(features.shape)}"
            )
        if m == 0 or self.fusion == "average":
            return features.new_full((b, m, 1, h, w), 1.0 / max(m, 1))
        return normalise_weights(self.wnns[scale](features, image))


@contextmanager
def uniform_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Force W_j = 1/m in every PWAVE of ``model`` (an ``ExemplarSRModule``, its generator or a
    ``PWAVE``) inside the block, whatever its ``fusion``; the learned WNNs are kept, only unused.

    The analysis's uniform-weights control: with occluded exemplars, H5 must fail when the
    learned weights are replaced by uniform ones at inference (with clean exemplars, which all
    carry the same detail, uniform weights change little). ``fusion`` is restored on exit, also
    after an error.

    Raises:
        ValueError: ``model`` holds no PWAVE.
    """
    fusers = [m for m in model.modules() if isinstance(m, PWAVE)]
    if not fusers:
        raise ValueError(f"uniform_weights: {type(model).__name__} holds no PWAVE module")
    saved = [fuser.fusion for fuser in fusers]
    try:
        for fuser in fusers:
            fuser.fusion = "average"
        yield model
    finally:
        for fuser, fusion in zip(fusers, saved, strict=True):
            fuser.fusion = fusion
