"""FaceNet's triplet loss with in-batch semi-hard negatives: the loss of ISTRC's encoder stand-in
(spec ``istrc``, "Losses and training", E stand-in; Schroff et al., "FaceNet", CVPR 2015, §3.2).

    L = mean over triplets (a, p, n) of max(||f_a - f_p||^2 - ||f_a - f_n||^2 + alpha, 0)

with alpha = 0.2 on the unit embeddings f. Triplets are mined in one batch of P identities x K
images (FACENET: all anchor-positive pairs, hard negatives within the batch):

- every ordered anchor-positive pair (a, p), a != p, of one identity is a triplet's base, so a
  P x K batch gives P K (K - 1) triplets (FaceNet's "all anchor-positive pairs");
- its negative n (another identity) is semi-hard when d_ap < d_an < d_ap + alpha (d: squared
  distances): farther than the positive, still inside the margin. The paper does not say which
  semi-hard negative; this suite takes the closest one (deterministic, no RNG to keep in step
  across ranks). When there is none, the closest negative farther than the positive (beyond the
  margin: its hinge is 0), and when no negative is farther than the positive, the hardest (the
  closest) negative. The three cases are one rule, "the closest negative with d_an > d_ap, else
  the closest negative": the closest farther negative is semi-hard whenever any is, so alpha does
  not change the choice, only the loss;
- triplets whose hinge is 0 stay in the mean (the loss is averaged over all mined triplets), so a
  batch that is already separated by the margin has loss 0.

Mining reads detached squared distances; the loss is recomputed on the selected rows
(``components.triplets.triplet_loss``), so gradients flow through anchor, positive and negative.
Under DDP every rank mines in its own batch (its own P identities; no embeddings cross ranks) and
DDP averages the ranks' gradients.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lightning_modules.components.triplets import Triplets, triplet_loss

__all__ = ["MinedLoss", "batch_triplet_loss", "semi_hard_triplets"]

#: FaceNet's margin alpha between positive and negative squared distances of unit embeddings.
MARGIN = 0.2


class MinedLoss(NamedTuple):
    """The loss of one batch and what its mined triplets were.

    Attributes:
        loss: Mean hinge over the triplets (0-d, with a graph).
        triplets: How many were mined (P K (K - 1) for a P x K batch).
        active: Fraction of triplets with a positive hinge (0-d, detached).
        semi_hard: Fraction whose negative was semi-hard, d_ap < d_an < d_ap + alpha.
        hard: Fraction whose negative was no farther than the positive, d_an <= d_ap.
    """

    loss: Tensor
    triplets: int
    active: Tensor
    semi_hard: Tensor
    hard: Tensor


def squared_distances(embeddings: Tensor) -> Tensor:
    """(B, B) squared Euclidean distances between the rows of ``embeddings`` (B, d), exact
    differences (not the Gram-matrix expansion, which cancels badly near 0)."""
    return (embeddings[:, None, :] - embeddings[None, :, :]).pow(2).sum(dim=-1)


def semi_hard_triplets(embeddings: Tensor, identity: Tensor) -> Triplets:
    """One triplet per ordered anchor-positive pair, negative mined as the module docstring says.

    Args:
        embeddings: (B, d) embeddings of the batch (read detached).
        identity: Integer (B,) identity labels.

    Returns:
        ``Triplets`` of batch indices, anchor-positive pairs in row-major order (anchor, then
        positive ascending); pairs whose batch holds no other identity are dropped.
    """
    if embeddings.ndim != 2 or identity.shape != embeddings.shape[:1]:
        raise ValueError(
            f"embeddings (B, d) and identity (B,) must agree, got {tuple(embeddings.shape)} and "
            f"{tuple(identity.shape)}"
        )
    if identity.dtype.is_floating_point or identity.dtype == torch.bool:
        raise ValueError(f"identity must hold integer labels, got {identity.dtype}")
    distance = squared_distances(embeddings.detach())  # (B, B)
    same = identity[:, None] == identity[None, :]
    own = torch.eye(len(identity), dtype=torch.bool, device=identity.device)
    anchor, positive = torch.nonzero(same & ~own, as_tuple=True)  # (M,) each
    to_negative = distance[anchor]  # (M, B)
    is_negative = ~same[anchor]
    farther = is_negative & (to_negative > distance[anchor, positive][:, None])
    closest_farther = to_negative.masked_fill(~farther, torch.inf).argmin(dim=1)
    closest = to_negative.masked_fill(~is_negative, torch.inf).argmin(dim=1)
    negative = torch.where(farther.any(dim=1), closest_farther, closest)
    keep = is_negative.any(dim=1)
    return Triplets(anchor[keep], positive[keep], negative[keep])


def batch_triplet_loss(embeddings: Tensor, identity: Tensor, margin: float = MARGIN) -> MinedLoss:
    """FaceNet's loss on one batch: semi-hard triplets mined in it, hinge averaged over them.

    A batch without anchor-positive pairs (no identity twice) or with one identity only mines no
    triplet: its loss is 0 (with a graph) and ``triplets`` is 0.

    Args:
        embeddings: (B, d) unit embeddings, with a graph.
        identity: Integer (B,) identity labels.
        margin: alpha (0.2).
    """
    triplets = semi_hard_triplets(embeddings, identity)
    a, p, n = (embeddings[index] for index in triplets)
    loss = triplet_loss(a, p, n, margin)
    with torch.no_grad():
        d_ap = (a - p).pow(2).sum(dim=1)
        d_an = (a - n).pow(2).sum(dim=1)
        count = max(len(d_ap), 1)
        active = (d_ap - d_an + margin > 0).sum() / count
        semi_hard = ((d_an > d_ap) & (d_an < d_ap + margin)).sum() / count
        hard = (d_an <= d_ap).sum() / count
    return MinedLoss(loss, len(triplets.anchor), active, semi_hard, hard)
