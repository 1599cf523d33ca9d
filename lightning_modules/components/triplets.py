"""The squared-L2 triplet loss and the index triplets it is taken over, shared by every method
that mines triplets in a batch (the disentangled AAE's Eq. 12, ISTRC's FaceNet stand-in).

    loss = mean over triplets (a, p, n) of max(0, ||f_a - f_p||_2^2 - ||f_a - f_n||_2^2 + margin)

A miner returns ``Triplets(anchor, positive, negative)``: long index tensors (N,) into the batch,
one row per triplet; ``triplet_loss`` takes the rows they index.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["Triplets", "triplet_loss"]


class Triplets(NamedTuple):
    """Batch indices of anchors, positives and negatives: three long tensors (N,)."""

    anchor: Tensor
    positive: Tensor
    negative: Tensor


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0) -> Tensor:
    """Mean over triplets of max(0, ||a - p||^2 - ||a - n||^2 + margin).

    Zero triplets give 0, still attached to the inputs' graph (a sum over no rows), so a batch
    without triplets does not break ``backward``.

    Args:
        anchor: Anchor vectors (N, d).
        positive: Their positives (N, d).
        negative: Their negatives (N, d).
        margin: >= 0, on the vectors as given (1.0: the disentangle spec's delta_k; FaceNet's
            alpha on unit embeddings is 0.2).
    """
    if anchor.ndim != 2 or anchor.shape != positive.shape or anchor.shape != negative.shape:
        raise ValueError(
            "anchor, positive and negative must share one (N, d) shape, got "
            f"{tuple(anchor.shape)}, {tuple(positive.shape)} and {tuple(negative.shape)}"
        )
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    to_positive = (anchor - positive).pow(2).sum(dim=1)  # (N,)
    to_negative = (anchor - negative).pow(2).sum(dim=1)  # (N,)
    hinge = (to_positive - to_negative + margin).clamp_min(0.0)
    return hinge.sum() / max(hinge.shape[0], 1)
