"""E_Ex, the exemplar encoder of PWAVE (thesis ch. 6; spec ``hallucination`` section 3).

Shared over the exemplars: the m HR exemplars of each sample are encoded one by one (reshaped to
(B * m, 3, HR, HR)). A Conv3x3-LReLU stem (3 -> 32) is followed by M1 ``DownBlock`` stages
(widths 64, 128, 128, 128, ...), each halving the size, so HR = H_LR * 2^M1 ends at H_LR. Two taps
feed the two fusion scales: f_Ex^(2) after stage M1 - 1 (2 H_LR) and f_Ex^(1) after stage M1
(H_LR), each projected by a linear Conv1x1 to K = 128 channels. The widths and the tap design are
the spec's proposal (the thesis's figures are lost).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_modules.components.equalized import EqualizedConv2d
from lightning_modules.exemplar_sr.blocks import DownBlock, check_widths, conv_lrelu

__all__ = ["ExemplarEncoder"]


class ExemplarEncoder(nn.Module):
    """Exemplars (B, m, 3, HR, HR) -> f^(1) (B, m, K, H_LR, H_LR), f^(2) (B, m, K, 2H_LR, 2H_LR).

    Args:
        num_stages: M1, down-sampling stages (3 for x8, 4 for x16); HR = H_LR * 2^M1.
        widths: Output width of each stage; the first M1 are used.
        stem_channels: Width of the Conv3x3 stem on the RGB exemplars.
        feature_channels: K, channels of both projected taps.
        equalized_lr: Equalized learning rate of every convolution.

    Example:

        >>> import torch
        >>> enc = ExemplarEncoder(3, widths=(8, 16, 16), stem_channels=4, feature_channels=8)
        >>> [f.shape for f in enc(torch.zeros(2, 3, 3, 128, 128))]
        [torch.Size([2, 3, 8, 16, 16]), torch.Size([2, 3, 8, 32, 32])]
    """

    def __init__(
        self,
        num_stages: int = 3,
        widths: Sequence[int] = (64, 128, 128, 128),
        stem_channels: int = 32,
        feature_channels: int = 128,
        equalized_lr: bool = True,
    ) -> None:
        super().__init__()
        check_widths("ExemplarEncoder", num_stages, widths)
        chans = [stem_channels, *widths[:num_stages]]
        self.stem = conv_lrelu(3, stem_channels, 3, equalized_lr)
        self.stages = nn.ModuleList(
            DownBlock(a, b, equalized_lr) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        # linear 1x1 projections of the two taps to K channels
        self.project_1 = EqualizedConv2d(
            chans[-1], feature_channels, 1, gain=1.0, equalized_lr=equalized_lr
        )
        self.project_2 = EqualizedConv2d(
            chans[-2], feature_channels, 1, gain=1.0, equalized_lr=equalized_lr
        )
        self.num_stages, self.feature_channels = num_stages, feature_channels

    def forward(self, exemplars: Tensor) -> tuple[Tensor, Tensor]:
        """(B, m, 3, HR, HR) -> f^(1) at HR / 2^M1, f^(2) at twice that, each (B, m, K, h, h)."""
        if exemplars.dim() != 5 or exemplars.size(2) != 3:
            raise ValueError(f"exemplars must be (B, m, 3, HR, HR), got {tuple(exemplars.shape)}")
        b, m = exemplars.shape[:2]
        x = self.stem(exemplars.flatten(0, 1))  # (B * m, stem, HR, HR)
        for stage in self.stages[:-1]:
            x = stage(x)
        tap_2 = x  # 2 H_LR
        tap_1 = self.stages[-1](x)  # H_LR
        f_1, f_2 = self.project_1(tap_1), self.project_2(tap_2)
        return f_1.unflatten(0, (b, m)), f_2.unflatten(0, (b, m))
