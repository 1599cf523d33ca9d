"""The linear probe P of OLR: one dense layer from the flattened embedding to the label logits."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LinearProbe"]


class LinearProbe(nn.Module):
    """Embeddings (B, L, k) or flattened (B, L * k) -> label logits (B, L).

    The paper's probe is one sigmoid layer (1216 -> 38); the sigmoid belongs to the loss
    (``binary_cross_entropy_with_logits``) and to the prediction ``logits.sigmoid() >= 0.5``.

    Args:
        num_labels: L (38).
        embedding_dim: k (32).

    Example:
        >>> LinearProbe(num_labels=38, embedding_dim=8)(torch.rand(4, 38, 8)).shape
        torch.Size([4, 38])
    """

    def __init__(self, num_labels: int = 38, embedding_dim: int = 32) -> None:
        super().__init__()
        self.num_labels, self.embedding_dim = num_labels, embedding_dim
        self.linear = nn.Linear(num_labels * embedding_dim, num_labels)

    def forward(self, embeddings: Tensor) -> Tensor:
        flat = embeddings.flatten(1)
        if flat.shape[1] != self.linear.in_features:
            raise ValueError(
                f"LinearProbe expects embeddings of {self.num_labels} x {self.embedding_dim} = "
                f"{self.linear.in_features} numbers per image, got {tuple(embeddings.shape)}"
            )
        return self.linear(flat)
