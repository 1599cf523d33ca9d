"""Bidirectional-LSTM set encoder and prediction unit: the pooling of "Ours" (thesis Fig. 7.1).

Wang, Oramas, Tuytelaars, "In Defense of LSTMs for Addressing Multiple Instance Learning
Problems", ACCV 2020: a one-layer bidirectional LSTM reads the instance features; f_set = [forward
state after the last instance; backward state after the first]; the prediction unit is Dropout +
Linear(2H -> 1). Padded positions never reach the LSTM (packed sequences).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from lightning_modules.mil_lstm.pooling import BagPooling


class LSTMPooling(BagPooling):
    """BiLSTM set encoder + prediction unit.

    Args:
        feature_dim: Instance feature size D (given by the module: the LeNet output, 500).
        hidden_dim: LSTM hidden size per direction (500); f_set has 2 * hidden_dim entries.
        dropout: Dropout before the prediction layer (0.5).
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 500, dropout: float = 0.5) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            feature_dim, hidden_dim, num_layers=1, bidirectional=True, batch_first=True
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden_dim, 1))

    def set_representation(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Instance features (B, T, D) + mask -> f_set (B, 2H) from the packed BiLSTM."""
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # (2, B, H): forward after last step, backward after first
        return torch.cat([h_n[0], h_n[1]], dim=1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.set_representation(features, mask))[:, 0]

    def singleton_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """f_set of each instance as a singleton set (N, 2H) (Table 7.5, Figs. 7.9/7.10)."""
        features = features[:, None]
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return self.set_representation(features, mask)

    def forward_states(self, features: torch.Tensor) -> torch.Tensor:
        """Forward-LSTM hidden state after each instance of one bag (T, H) (Fig. 7.8)."""
        return self.lstm(features[None])[0][0, :, : self.lstm.hidden_size]
