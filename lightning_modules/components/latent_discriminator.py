"""An MLP discriminator on latent codes: (B, Z) -> (B,) logits, prior sample vs encoding.

The latent discriminator D_z of the disentangled AAE (spec ``disentangle`` section 3: "3 FC
layers of 1000, BatchNorm, dropout p=0.2, ReLU"), read as ``layers`` hidden blocks
[Linear-BN1d-ReLU-Dropout] and a linear logit. Any adversarial autoencoder that matches its
codes to a prior can use it.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LatentDiscriminator"]


class LatentDiscriminator(nn.Module):
    """``layers`` x [Linear(-> hidden)-BatchNorm1d-ReLU-Dropout] -> Linear(hidden, 1) logits.

    Args:
        latent_dim: Size Z of the codes it judges.
        hidden: Width of each hidden layer.
        layers: Number of hidden blocks.
        dropout: Dropout probability after each hidden ReLU (inactive in eval mode).

    Example:
        >>> LatentDiscriminator(10, hidden=16)(torch.zeros(4, 10)).shape
        torch.Size([4])
    """

    def __init__(
        self, latent_dim: int = 99, hidden: int = 1000, layers: int = 3, dropout: float = 0.2
    ) -> None:
        super().__init__()
        if min(latent_dim, hidden, layers) < 1:
            raise ValueError(f"must be >= 1: {latent_dim=}, {hidden=}, {layers=}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        blocks: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            blocks += [
                nn.Linear(width, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
            width = hidden
        self.hidden = nn.Sequential(*blocks)
        self.logit = nn.Linear(hidden, 1)

    def forward(self, z: Tensor) -> Tensor:
        """(B, Z) codes -> (B,) logits (positive: judged a prior sample)."""
        return self.logit(self.hidden(z)).squeeze(-1)
