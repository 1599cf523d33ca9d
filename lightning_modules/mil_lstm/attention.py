"""Attention and gated-attention MIL pooling (Ilse, Tomczak, Welling, ICML 2018, arXiv 1802.04712).

a_i = softmax_i(w^T tanh(V h_i)) (gated: w^T (tanh(V h_i) * sigm(U h_i))), z = sum_i a_i h_i,
score = Linear(D -> 1)(z). Baselines of thesis Table 7.1.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.mil_lstm.pooling import BagPooling, masked_softmax


class AttentionPooling(BagPooling):
    """Attention / gated-attention pooling.

    Args:
        feature_dim: M, instance feature size (given by the module: 500).
        attention_dim: L, attention hidden size (128).
        gated: Gated attention (tanh * sigmoid branches) instead of plain tanh attention.
    """

    def __init__(self, feature_dim: int, attention_dim: int = 128, gated: bool = False) -> None:
        super().__init__()
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

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = (self.attention(features, mask)[..., None] * features).sum(1)
        return self.head(z)[:, 0]
