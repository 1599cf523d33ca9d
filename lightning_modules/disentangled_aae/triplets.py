"""Triplet loss on one sub-vector of f and the three in-batch triplet miners of Stage B.

Loss (spec ``disentangle`` Eq. 12 as corrected in section 8 item 2; ``triplet_loss`` and
``Triplets`` live in ``components.triplets``, re-exported here): for triplets of sub-vectors
(f_k, f_k^+, f_k^-),

    tl_k = max(0, ||f_k - f_k^+||_2^2 - ||f_k - f_k^-||_2^2 + delta_k),

averaged over the anchors (one triplet per anchor), delta_k = 1.0 by default.

Miners return ``Triplets(anchor, positive, negative)``: long index tensors (N,) into the batch,
one row per anchor that has a valid positive and a valid negative (the others are dropped; when
no anchor is valid the three tensors are empty, and ``triplet_loss`` of them is 0).

- ``identity_triplets`` [paper]: a random positive of the same identity (not the anchor) and a
  random negative of another identity.
- ``expression_triplets`` [paper, Eq. 13 with the sign corrected, section 8 item 3]: the other
  n = B - 1 samples are ranked by dist(i, j) = ||(v, a)^i - (v, a)^j||^2 + lambda_l (1 - [l^i =
  l^j]); the positive is the nearest, the negative uniform over ranks [k, n), k = floor(n / 2)
  (section 8 item 4). Ties in dist are ranked in random order. Needs B >= 3 (n >= 2, so that
  the far half does not contain the positive); smaller batches give no triplets.
- ``style_triplets`` (section 8 item 1), two readings:
  ``"same_clip_pos"`` [default]: positive = another frame of the same clip, negative = a frame
  of another clip of the same person (style is constant inside a clip and must not follow
  identity); ``"literal"``: the paper's text, positive = a frame of another clip of the same
  person. The text names no negative; this reading takes another frame of the anchor's clip,
  i.e. the two roles of the default exchanged, which is what the decision corrects.

Random draws come only from the given ``torch.Generator`` (made on its device, then moved to the
labels' device), never from the global generator. The miners run on the labels' device; dropping
the anchors without a valid pair (identity, style) reads their count back to the host, one sync
per call. The expression miner, whose validity depends only on B, makes none.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lightning_modules.components.triplets import Triplets, triplet_loss

__all__ = [
    "StyleMode",
    "Triplets",
    "expression_triplets",
    "identity_triplets",
    "style_triplets",
    "triplet_loss",
]

#: The two readings of the style triplet (spec section 8 item 1).
StyleMode = Literal["same_clip_pos", "literal"]


def identity_triplets(identity: Tensor, generator: torch.Generator) -> Triplets:
    """A random same-identity positive and a random other-identity negative for each anchor.

    Anchors whose identity has no other sample, or whose batch has one identity only, are dropped.

    Args:
        identity: Integer identity labels (B,).
        generator: Source of the random choices.
    """
    _check_labels(identity, "identity")
    same = identity[:, None] == identity[None, :]  # (B, B)
    return _mine(same & ~_eye(identity), ~same, generator)


def style_triplets(
    identity: Tensor,
    clip: Tensor,
    generator: torch.Generator,
    mode: StyleMode = "same_clip_pos",
) -> Triplets:
    """Style triplets inside one person's clips (both readings in the module docstring).

    A clip is the pair (identity, clip), so clip ids need to be unique only within a person.
    ``"same_clip_pos"``: positive = another frame of the anchor's clip, negative = a frame of
    another clip of the same person. ``"literal"``: the two exchanged.

    Args:
        identity: Integer person labels (B,).
        clip: Integer clip labels (B,).
        generator: Source of the random choices.
        mode: ``"same_clip_pos"`` (default, spec section 8 item 1) or ``"literal"``.
    """
    _check_labels(identity, "identity")
    _check_labels(clip, "clip")
    if clip.shape != identity.shape:
        raise ValueError(
            f"clip {tuple(clip.shape)} and identity {tuple(identity.shape)} must have one "
            "label per sample"
        )
    same_person = identity[:, None] == identity[None, :]  # (B, B)
    same_clip = same_person & (clip[:, None] == clip[None, :])
    same_clip_other_frame = same_clip & ~_eye(identity)
    other_clip_same_person = same_person & ~same_clip
    if mode == "same_clip_pos":
        return _mine(same_clip_other_frame, other_clip_same_person, generator)
    if mode == "literal":
        return _mine(other_clip_same_person, same_clip_other_frame, generator)
    raise ValueError(f"mode must be 'same_clip_pos' or 'literal', got {mode!r}")


def expression_triplets(
    valence_arousal: Tensor,
    category: Tensor,
    generator: torch.Generator,
    lambda_l: float = 0.25,
) -> Triplets:
    """Eq. 13 triplets: the nearest other sample as positive, a far-half one as negative.

    Args:
        valence_arousal: (v, a) labels (B, 2) in [0, 1].
        category: Integer expression classes l (B,).
        generator: Source of the tie order and of the negatives' ranks.
        lambda_l: Weight of the category term, >= 0 (0.25 [paper]; a negative weight would be
            the uncorrected sign of the OCR).
    """
    if valence_arousal.ndim != 2 or valence_arousal.shape[1] != 2:
        raise ValueError(f"valence_arousal must be (B, 2), got {tuple(valence_arousal.shape)}")
    _check_labels(category, "category")
    if category.shape[0] != valence_arousal.shape[0]:
        raise ValueError(
            f"category has {category.shape[0]} labels but valence_arousal "
            f"{valence_arousal.shape[0]} rows"
        )
    if lambda_l < 0:
        raise ValueError(f"lambda_l must be >= 0 (Eq. 13, corrected sign), got {lambda_l}")
    b, device = category.shape[0], category.device
    n = b - 1  # the other samples
    if n < 2:
        return _empty(device)
    va = valence_arousal.detach()
    dist = (va[:, None, :] - va[None, :, :]).pow(2).sum(dim=-1)  # (B, B)
    dist = dist + lambda_l * (category[:, None] != category[None, :]).to(dist.dtype)
    dist = dist.masked_fill(_eye(category), float("inf"))  # the anchor ranks last, at n
    # Rank the columns by dist, ties in a random order: a random shuffle, then a stable sort.
    shuffle = _uniform((b, b), generator, device).argsort(dim=1)  # (B, B)
    by_dist = dist.gather(1, shuffle).sort(dim=1, stable=True).indices
    ranked = shuffle.gather(1, by_dist)  # (B, B) column ids, nearest first
    k = n // 2
    offset = (_uniform((b,), generator, device) * (n - k)).long()  # uniform in [0, n - k)
    rank = (k + offset).clamp_max(n - 1)  # in [k, n); the clamp only guards rounding at u ~ 1
    anchor = torch.arange(b, device=device)
    return Triplets(anchor, ranked[:, 0], ranked.gather(1, rank[:, None]).squeeze(1))


def _mine(positive_ok: Tensor, negative_ok: Tensor, generator: torch.Generator) -> Triplets:
    """One uniform pick per row among the True entries of each (B, B) mask; empty rows dropped."""
    positive, has_positive = _random_true(positive_ok, generator)
    negative, has_negative = _random_true(negative_ok, generator)
    anchor = (has_positive & has_negative).nonzero().squeeze(1)  # the one host sync
    return Triplets(anchor, positive[anchor], negative[anchor])


def _random_true(mask: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A uniformly drawn True column per row of ``mask`` (B, B), and whether the row had one.

    The argmax of i.i.d. uniform scores over the allowed columns is uniform over them.
    """
    scores = _uniform(tuple(mask.shape), generator, mask.device).masked_fill(~mask, -1.0)
    return scores.argmax(dim=1), mask.any(dim=1)


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """U[0, 1) float64 draws from ``generator`` (on its device), moved to ``device``."""
    draws = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    return draws.to(device, non_blocking=True)


def _eye(labels: Tensor) -> Tensor:
    """(B, B) True on the diagonal: a sample paired with itself."""
    return torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


def _empty(device: torch.device) -> Triplets:
    none = torch.zeros(0, dtype=torch.long, device=device)
    return Triplets(none, none.clone(), none.clone())


def _check_labels(labels: Tensor, name: str) -> None:
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise ValueError(
            f"{name} must be integer labels (B,), got {labels.dtype} {tuple(labels.shape)}"
        )
