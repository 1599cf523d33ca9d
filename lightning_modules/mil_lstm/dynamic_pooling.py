"""Dynamic pooling by routing (Yan et al. 2018; no official code, reconstructed), with its heads.

Instance vectors u_i = W h_i, routing logits b = 0, ``iterations`` times: a = softmax(b),
s = sum_i a_i u_i, v = squash(s), b_i += u_i . v. ``head="capsule"`` scores the bag by ||v|| (a
probability) and trains it with the capsule margin loss (m+ 0.9, m- 0.1, down-weight 0.5);
``head="linear"`` puts a Linear head on v (a logit or a count). Deviation: the projection W
(D -> ``capsule_dim``) is ours, the capsule "prediction vectors" of routing.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lightning_modules.mil_lstm.pooling import BagPooling, masked_softmax


def squash(s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Capsule non-linearity ||s||^2 / (1 + ||s||^2) * s / ||s|| along the last dim."""
    norm2 = (s * s).sum(-1, keepdim=True)
    return norm2 / (1 + norm2) * s / (norm2 + eps).sqrt()


class DynamicPooling(BagPooling):
    """Dynamic pooling by routing.

    Args:
        feature_dim: Instance feature size (given by the module: 500).
        head: ``capsule`` (score ||v||, margin loss; classification only) or ``linear``.
        capsule_dim: Size of the projected instance vectors u_i.
        iterations: Routing iterations (3).
    """

    def __init__(
        self,
        feature_dim: int,
        head: Literal["capsule", "linear"] = "capsule",
        capsule_dim: int = 128,
        iterations: int = 3,
    ) -> None:
        super().__init__()
        if head not in ("capsule", "linear"):
            raise ValueError(f"head must be 'capsule' or 'linear', got {head!r}")
        self.iterations = iterations
        self.score_is_probability = head == "capsule"  # a capsule length lies in [0, 1)
        self.project = nn.Linear(feature_dim, capsule_dim)
        self.head = nn.Linear(capsule_dim, 1) if head == "linear" else None

    def route(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Bag capsule v (B, capsule_dim) after the routing iterations."""
        u = self.project(features)
        logits = torch.zeros(mask.shape, device=u.device, dtype=u.dtype)
        for _ in range(self.iterations):
            v = squash((masked_softmax(logits, mask)[..., None] * u).sum(1))
            logits = logits + (u * v[:, None]).sum(-1)
        return v

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = self.route(features, mask)
        return v.norm(dim=-1) if self.head is None else self.head(v)[:, 0]

    def classification_loss(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Capsule margin loss on ||v|| (m+ 0.9, m- 0.1, lambda 0.5); NLL for the linear head."""
        if self.head is not None:
            return super().classification_loss(probs, target)
        positive = target * (0.9 - probs).clamp_min(0) ** 2
        negative = 0.5 * (1 - target) * (probs - 0.1).clamp_min(0) ** 2
        return (positive + negative).mean()
