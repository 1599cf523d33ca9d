"""A plain multilayer perceptron: Linear -> ReLU per hidden width, then a linear output.

The disentangled AAE's Phi and Phi^-1 (99 -> 1000 -> 1000 -> 99, no normalisation, no dropout)
are this network; so are small heads of other methods (ISTRC's mapping F and attribute
classifiers). Optional dropout after each hidden activation.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """[Linear -> ReLU (-> Dropout)] per hidden width, then Linear to ``out_features``.

    Args:
        in_features: Input size.
        hidden: Width of each hidden layer (empty: one linear layer).
        out_features: Output size (linear output).
        dropout: Dropout probability after each hidden ReLU (0 = none).

    Example:
        >>> MLP(99, (1000, 1000), 99)(torch.zeros(2, 99)).shape
        torch.Size([2, 99])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        dropout: float = 0.0,
    ) -> None:
        widths = [in_features, *hidden, out_features]
        if min(widths) < 1:
            raise ValueError(f"every width must be >= 1, got {widths}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-2], widths[1:-1], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-2], widths[-1]))
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:  # (B, in_features) -> (B, out_features)
        return super().forward(x)
