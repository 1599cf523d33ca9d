"""The multiple-exemplar face hallucination generator (thesis ch. 6; spec ``hallucination`` 3).

``ExemplarSRGenerator`` ties the networks of the method together: E_Ex encodes the m exemplars at
two scales, G_S makes I'_LR from I_LR, PWAVE (WNN-1, WNN-2) weighs and sums the exemplar features
guided by I_LR and the detached I'_LR, and the ISR trunk super-resolves I_LR with the fused
features. It exposes the parameter groups of the spec's optimizers (section 4): ``main`` =
{ISR, E_Ex} (lr 3e-3), ``wnn`` = {WNN-1, WNN-2} (lr 1e-4; empty with ``fusion="average"``), and
``small`` = {G_S} (lr 3e-3, its own optimizer). The first loss bracket (on I_SR) reaches only
main and wnn, the second (on I'_LR) only small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.exemplar_sr.exemplar_encoder import ExemplarEncoder
from lightning_modules.exemplar_sr.isr import ISR
from lightning_modules.exemplar_sr.pwave import PWAVE, Fusion
from lightning_modules.exemplar_sr.small_generator import SmallGenerator

__all__ = ["ExemplarSRAux", "ExemplarSRGenerator"]


class ExemplarSRAux(TypedDict):
    """The generator's by-products.

    Keys:
        lr_prime: I'_LR = G_S(I_LR), (B, 3, 2H_LR, 2H_LR), with its graph (for Eqs. 6.2, 6.4).
        weights: (W at H_LR (B, m, 1, H_LR, H_LR), W at 2 H_LR (B, m, 1, 2H_LR, 2H_LR)).
        weight_entropy: Mean entropy of W over both scales, pixels and samples (scalar, nats).
    """

    lr_prime: Tensor
    weights: tuple[Tensor, Tensor]
    weight_entropy: Tensor


class ExemplarSRGenerator(nn.Module):
    """(I_LR (B, 3, H, H), exemplars (B, m, 3, HR, HR)) -> (I_SR (B, 3, HR, HR), aux); HR = 2^M1 H.

    Args:
        num_up_blocks: M1 (3: x8 from 16 px, 4: x16 from 8 px, CelebA) [paper].
        num_res_blocks: M2, residual blocks of the ISR trunk [paper: 1].
        isr_widths: Widths of the ISR up blocks (the first is also the trunk's width).
        encoder_widths: Widths of E_Ex's down stages.
        encoder_stem_channels: Width of E_Ex's stem.
        feature_channels: K, channels of the exemplar features and the fused features.
        wnn_channels: Hidden width of WNN-1 and WNN-2.
        small_channels: Hidden width of G_S.
        fusion: "pwave" (learned pixel weights) or "average" (W = 1/m).
        bicubic_skip: Add the bicubic upsample of I_LR to the trunk's output (a residual trunk;
            not the thesis's design, a CPU-budget option).
        equalized_lr: Equalized learning rate in every network (spec section 8.4).

    Example:

        >>> import torch
        >>> g = ExemplarSRGenerator(isr_widths=(16, 8, 8), encoder_widths=(8, 16, 16),
        ...     encoder_stem_channels=4, feature_channels=8, wnn_channels=8, small_channels=8)
        >>> sr, aux = g(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 3, 128, 128))
        >>> sr.shape, aux["weights"][1].shape
        (torch.Size([2, 3, 128, 128]), torch.Size([2, 3, 1, 32, 32]))
    """

    def __init__(
        self,
        num_up_blocks: int = 3,
        num_res_blocks: int = 1,
        isr_widths: Sequence[int] = (256, 128, 64, 32),
        encoder_widths: Sequence[int] = (64, 128, 128, 128),
        encoder_stem_channels: int = 32,
        feature_channels: int = 128,
        wnn_channels: int = 64,
        small_channels: int = 64,
        fusion: Fusion = "pwave",
        equalized_lr: bool = True,
        bicubic_skip: bool = False,
    ) -> None:
        super().__init__()
        eq = equalized_lr
        self.encoder = ExemplarEncoder(
            num_up_blocks, encoder_widths, encoder_stem_channels, feature_channels, eq
        )
        self.small_generator = SmallGenerator(small_channels, equalized_lr=eq)
        self.pwave = PWAVE(feature_channels, wnn_channels, fusion, eq)
        self.isr = ISR(num_up_blocks, num_res_blocks, isr_widths, feature_channels, eq)
        self.num_up_blocks, self.feature_channels = num_up_blocks, feature_channels
        self.bicubic_skip = bicubic_skip

    def forward(self, lr: Tensor, exemplars: Tensor | None = None) -> tuple[Tensor, ExemplarSRAux]:
        """Super-resolve ``lr`` (B, 3, H, H) guided by ``exemplars`` (B, m, 3, HR, HR).

        m = 0 (or ``exemplars=None``) skips E_Ex: the fused features are zero and W is empty.
        """
        b, h = self._check(lr, exemplars)
        lr_prime = self.small_generator(lr)
        if exemplars is None or exemplars.size(1) == 0:
            k = self.feature_channels
            features = (lr.new_zeros(b, 0, k, h, h), lr.new_zeros(b, 0, k, 2 * h, 2 * h))
        else:
            features = self.encoder(exemplars)
        fusion = self.pwave(features, lr, lr_prime)  # reads lr_prime detached
        sr = self.isr(lr, *fusion.fused)
        if self.bicubic_skip:
            scale = 2**self.num_up_blocks
            sr = sr + F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
        return sr, ExemplarSRAux(
            lr_prime=lr_prime, weights=fusion.weights, weight_entropy=fusion.entropy
        )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The spec's optimizer groups: main = {ISR, E_Ex}, wnn = {WNN-1, WNN-2}, small = {G_S}."""
        return {
            "main": [*self.isr.parameters(), *self.encoder.parameters()],
            "wnn": list(self.pwave.parameters()),
            "small": list(self.small_generator.parameters()),
        }

    def _check(self, lr: Tensor, exemplars: Tensor | None) -> tuple[int, int]:
        """(B, H_LR) after checking that the inputs' shapes agree with M1."""
        if lr.dim() != 4 or lr.size(1) != 3 or lr.size(2) != lr.size(3):
            raise ValueError(f"lr must be (B, 3, H, H), got {tuple(lr.shape)}")
        b, h = lr.size(0), lr.size(2)
        hr = h * 2**self.num_up_blocks
        if exemplars is not None and (
            exemplars.dim() != 5 or exemplars.shape[0] != b or exemplars.shape[2:] != (3, hr, hr)
        ):
            raise ValueError(
                f"exemplars must be (B={b}, m, 3, {hr}, {hr}) for lr {tuple(lr.shape)} and "
                f"M1={self.num_up_blocks}, got {tuple(exemplars.shape)}"
            )
        return b, h
