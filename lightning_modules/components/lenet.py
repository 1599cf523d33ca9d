"""The LeNet instance unit of Ilse et al. (2018) for 28x28 digits (plain torch)."""

from __future__ import annotations

import torch
from torch import nn


class LeNetInstanceEncoder(nn.Module):
    """LeNet instance unit of Ilse et al. (2018), used by the MIL methods on 28x28 digits.

    Conv(1->20, 5x5)-ReLU-MaxPool(2) -> Conv(20->50, 5x5)-ReLU-MaxPool(2) -> flatten 800 ->
    Linear(800->500)-ReLU.

    Args:
        in_channels: Image channels (1 for MNIST).
        feature_dim: Output size M (500 in the paper).
    """

    def __init__(self, in_channels: int = 1, feature_dim: int = 500) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 50, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.fc = nn.Sequential(nn.Linear(50 * 4 * 4, feature_dim), nn.ReLU())
        self.feature_dim = feature_dim
        self.local_channels = 50

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, 28, 28) -> global features (N, feature_dim), local map (N, 50, 4, 4)."""
        local = self.features(images)
        return self.fc(local.flatten(1)), local
