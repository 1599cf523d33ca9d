"""MIL baselines of thesis Table 7.1, on the same LeNet instance unit and training loop as MILLSTM.

- ``AttentionMIL``: attention-based (``gated=False``) and gated-attention MIL pooling of Ilse,
  Tomczak, Welling, "Attention-based Deep Multiple Instance Learning", ICML 2018 (arXiv
  1802.04712): a_i = softmax_i(w^T tanh(V h_i)) (gated: w^T (tanh(V h_i) * sigm(U h_i))),
  z = sum_i a_i h_i, head Linear(500 -> 1) + sigmoid (identity for counting).
- ``DynamicPoolingMIL``: dynamic pooling of Yan et al. 2018 (no official code; reconstructed):
  instance vectors u_i = W h_i, routing logits b = 0, 3 iterations of a = softmax(b),
  s = sum_i a_i u_i, v = squash(s), b_i += u_i . v. ``head="capsule"`` scores the bag by ||v||
  with the capsule margin loss (m+ 0.9, m- 0.1, down-weight 0.5); ``head="linear"`` puts the
  shared Linear (+ sigmoid) head on v. Deviation: the projection W (500 -> ``capsule_dim``) is
  ours, the capsule "prediction vectors" of routing.

All accept ``infomax=True`` (the * of Table 7.1's outlier column). Outputs and log keys as in
``lightning_modules.mil_lstm``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lightning_modules.mil_lstm import MILModule


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the instances (dim 1) of (B, T) scores, padded positions weight 0."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)


class AttentionMIL(MILModule):
    """Attention / gated-attention MIL pooling (Ilse et al. 2018).

    Args:
        gated: Gated attention (tanh * sigmoid branches) instead of plain tanh attention.
        objective: ``classification`` or ``regression`` (counting; no sigmoid).
        feature_dim: M, instance feature size (500).
        attention_dim: L, attention hidden size (128).
        infomax: Add the Deep InfoMax regularizer on the instance unit.
        infomax_variant: ``thesis`` or ``standard``.
        loss_weight: Factor on the total loss (5, as for MILLSTM, so budgets match).
        lr: Adam learning rate (5e-4).
        weight_decay: Adam weight decay (1e-4).
    """

    def __init__(
        self,
        gated: bool = False,
        objective: Literal["classification", "regression"] = "classification",
        feature_dim: int = 500,
        attention_dim: int = 128,
        infomax: bool = False,
        infomax_variant: Literal["thesis", "standard"] = "thesis",
        loss_weight: float = 5.0,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._build(objective == "regression", infomax, infomax_variant)
        self.attention_v = nn.Sequential(nn.Linear(feature_dim, attention_dim), nn.Tanh())
        self.attention_u = (
            nn.Sequential(nn.Linear(feature_dim, attention_dim), nn.Sigmoid()) if gated else None
        )
        self.attention_w = nn.Linear(attention_dim, 1)
        self.head = nn.Linear(feature_dim, 1)

    def attention(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, T) over the valid instances."""
        hidden = self.attention_v(features)
        if self.attention_u is not None:
            hidden = hidden * self.attention_u(features)
        return masked_softmax(self.attention_w(hidden)[..., 0], mask)

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = (self.attention(features, mask)[..., None] * features).sum(1)
        score = self.head(z)[:, 0]
        return score if self.regression else torch.sigmoid(score)


def squash(s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Capsule non-linearity ||s||^2 / (1 + ||s||^2) * s / ||s|| along the last dim."""
    norm2 = (s * s).sum(-1, keepdim=True)
    return norm2 / (1 + norm2) * s / (norm2 + eps).sqrt()


class DynamicPoolingMIL(MILModule):
    """Dynamic pooling by routing (Yan et al. 2018, reconstructed).

    Args:
        objective: ``classification`` or ``regression`` (regression needs ``head="linear"``).
        head: ``capsule`` (score ||v||, margin loss) or ``linear`` (Linear head on v).
        feature_dim: Instance feature size (500).
        capsule_dim: Size of the projected instance vectors u_i.
        iterations: Routing iterations (3).
        infomax: Add the Deep InfoMax regularizer on the instance unit.
        infomax_variant: ``thesis`` or ``standard``.
        loss_weight: Factor on the total loss (5).
        lr: Adam learning rate (5e-4).
        weight_decay: Adam weight decay (1e-4).
    """

    def __init__(
        self,
        objective: Literal["classification", "regression"] = "classification",
        head: Literal["capsule", "linear"] = "capsule",
        feature_dim: int = 500,
        capsule_dim: int = 128,
        iterations: int = 3,
        infomax: bool = False,
        infomax_variant: Literal["thesis", "standard"] = "thesis",
        loss_weight: float = 5.0,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if objective == "regression" and head == "capsule":
            raise ValueError("counting needs head='linear' (a capsule length lies in [0, 1))")
        self._build(objective == "regression", infomax, infomax_variant)
        self.project = nn.Linear(feature_dim, capsule_dim)
        self.head = nn.Linear(capsule_dim, 1) if head == "linear" else None

    def route(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Bag capsule v (B, capsule_dim) after the routing iterations."""
        u = self.project(features)
        logits = torch.zeros(mask.shape, device=u.device, dtype=u.dtype)
        for _ in range(self.hparams.iterations):
            v = squash((masked_softmax(logits, mask)[..., None] * u).sum(1))
            logits = logits + (u * v[:, None]).sum(-1)
        return v

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = self.route(features, mask)
        if self.head is None:
            return v.norm(dim=-1)
        score = self.head(v)[:, 0]
        return score if self.regression else torch.sigmoid(score)

    def _bag_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Capsule margin loss on ||v|| (m+ 0.9, m- 0.1, lambda 0.5); else the shared loss."""
        if self.head is not None:
            return super()._bag_loss(output, target)
        positive = target * (0.9 - output).clamp_min(0) ** 2
        negative = 0.5 * (1 - target) * (output - 0.1).clamp_min(0) ** 2
        return (positive + negative).mean()
