"""Minibatch standard deviation: one feature map telling a critic how varied its batch is.

Karras et al., "Progressive Growing of GANs" (ICLR 2018, arXiv:1710.10196, section 3), as
StyleGAN's reference implements it (``minibatch_stddev_layer``, and ``MinibatchStdLayer`` of
stylegan2-ada-pytorch): the batch is split into groups of G = min(group_size, B) samples, sample
i going to group i mod (B / G); within each group the standard deviation of every feature over
the G samples is taken (biased, sqrt(var + 1e-8)), averaged over channels and pixels into one
number per group, and that number is appended as a constant extra channel to each of the group's
samples. A critic ending in this layer can notice a generator that collapses to few outputs.

Batches: as the reference, B must be divisible by G; a batch smaller than ``group_size`` forms
a single group of all its samples. Any other batch (e.g. B = 6 with groups of 4) is refused
with a ValueError rather than silently regrouped; the hallucination batch is 8.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MinibatchStdDev", "minibatch_stddev"]


def minibatch_stddev(x: Tensor, group_size: int = 4, eps: float = 1e-8) -> Tensor:
    """(B, C, H, W) -> (B, C + 1, H, W): ``x`` with its group's mean feature stddev appended.

    Args:
        x: Feature maps (B, C, H, W).
        group_size: Samples per group G (taken as B when B is smaller).
        eps: Added to the variance before the square root.
    """
    if x.dim() != 4:
        raise ValueError(f"minibatch_stddev expects (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    group = min(group_size, b)
    if group < 1 or b % group != 0:
        raise ValueError(
            f"minibatch_stddev: batch {b} is not divisible by the group size {group} "
            f"(min(group_size={group_size}, batch)); use a batch that is a multiple of it"
        )
    y = x.reshape(group, b // group, c, h, w)  # sample i -> group i mod (B / G)
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # (B / G, C, H, W): biased variance per group
    y = (y + eps).sqrt().mean(dim=(1, 2, 3))  # (B / G,)
    y = y.reshape(1, b // group, 1, 1, 1).expand(group, -1, 1, h, w).reshape(b, 1, h, w)
    return torch.cat([x, y], dim=1)


class MinibatchStdDev(nn.Module):
    """The layer form of ``minibatch_stddev`` (+1 channel).

    Args:
        group_size: Samples per group G (StyleGAN: 4).
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C + 1, H, W)."""
        return minibatch_stddev(x, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"
