"""A plain multilayer perceptron: Linear (-> norm) -> activation per hidden width, then a linear
output.

The disentangled AAE's Phi and Phi^-1 (99 -> 1000 -> 1000 -> 99, ReLU, no normalisation, no
dropout) are this network; so are small heads of other methods: ISTRC's attribute classifiers
(ReLU) and its mapping F (BatchNorm1d then tanh on every hidden layer). Optional dropout after
each hidden activation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """[Linear (-> norm) -> activation (-> Dropout)] per hidden width, then Linear to
    ``out_features``.

    Layers are given as types (timm style): each hidden layer gets ``norm_layer(width)`` (when
    set) and ``act_layer()``; the output layer is linear.

    Args:
        in_features: Input size.
        hidden: Width of each hidden layer (empty: one linear layer).
        out_features: Output size (linear output).
        dropout: Dropout probability after each hidden activation (0 = none).
        act_layer: Activation after each hidden layer (ReLU).
        norm_layer: Normalisation between each hidden Linear and its activation, built with the
            width (``nn.BatchNorm1d``); None = none.

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
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        widths = [in_features, *hidden, out_features]
        if min(widths) < 1:
            raise ValueError(f"every width must be >= 1, got {widths}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-2], widths[1:-1], strict=True):
            layers.append(nn.Linear(a, b))
            if norm_layer is not None:
                layers.append(norm_layer(b))
            layers.append(act_layer())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-2], widths[-1]))
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:  # (B, in_features) -> (B, out_features)
        return super().forward(x)
