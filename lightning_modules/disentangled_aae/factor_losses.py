"""The task loss F_k of each factor of f: Eq. 11 for pose, mined triplets (Eq. 12) for the others.

Stage B applies F_k twice (spec ``disentangle`` section 4): to Phi's sub-vector f_k with the
batch's labels y_k (Eq. 7, summed over the factors a batch labels), and to the re-encoded
I(f*)_k of the cycled batch with the labels permuted by the same permutation (Eq. 10,
``labels[permutation]`` for every label tensor). ``factor_loss`` is that one F_k for a named k:

- "pose": F_p = mean L1 |y_p - f_p| over the batch and the 3 angles (Eq. 11), radians.
- "identity", "expression", "style": the triplets of ``triplets.py``, mined in the batch from its
  labels, then ``triplet_loss`` on the sub-vector.

Labels come as a mapping of batch keys, the ones ``LABEL_KEYS`` names per factor: ``pose``
float (B, 3) (yaw, pitch, roll), ``identity`` long (B,) (the person, also for style batches),
``valence_arousal`` float (B, 2) in [0, 1], ``expression`` long (B,) (the category l), ``clip``
long (B,) (unique within a person). Which factors a batch trains is the method's choice (a
style batch has ``identity`` but trains style and pose only, spec section 4); a factor whose keys
are missing raises.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lightning_modules.disentangled_aae.triplets import (
    StyleMode,
    Triplets,
    expression_triplets,
    identity_triplets,
    style_triplets,
    triplet_loss,
)

__all__ = ["LABEL_KEYS", "factor_loss", "pose_loss"]

#: The batch keys each factor's loss reads.
LABEL_KEYS: dict[str, tuple[str, ...]] = {
    "pose": ("pose",),
    "identity": ("identity",),
    "expression": ("valence_arousal", "expression"),
    "style": ("identity", "clip"),
}


def pose_loss(pred: Tensor, target: Tensor) -> Tensor:
    """F_p = mean |y_p - f_p| over the batch and the angles (Eq. 11).

    Args:
        pred: f_p (B, 3).
        target: y_p (B, 3), the same units (radians).
    """
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(
            f"pose prediction and target must share one (B, 3) shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    return (pred - target.to(pred.dtype)).abs().mean()


def factor_loss(
    name: str,
    part: Tensor,
    labels: Mapping[str, Tensor],
    generator: torch.Generator,
    *,
    margin: float = 1.0,
    lambda_l: float = 0.25,
    style_mode: StyleMode = "same_clip_pos",
) -> Tensor:
    """F_name(part, labels): the task loss of one factor on its sub-vector (B, d_name).

    Args:
        name: "pose", "identity", "expression" or "style".
        part: The factor's sub-vector of f (or of I(f*)), (B, d_name).
        labels: Batch label tensors by key (``LABEL_KEYS[name]`` must be present).
        generator: Source of the triplet draws (unused for pose).
        margin: delta_k of the triplet loss (1.0 [default]).
        lambda_l: Weight of the category term of Eq. 13 (0.25 [paper]).
        style_mode: Reading of the style triplet (spec section 8 item 1).
    """
    if name not in LABEL_KEYS:
        raise ValueError(f"unknown factor {name!r}; expected one of {tuple(LABEL_KEYS)}")
    missing = [key for key in LABEL_KEYS[name] if key not in labels]
    if missing:
        raise ValueError(
            f"the {name} loss needs labels {list(LABEL_KEYS[name])}; missing {missing} "
            f"(have {sorted(labels)})"
        )
    shapes = {key: tuple(labels[key].shape) for key in LABEL_KEYS[name]}
    if part.ndim != 2 or any(shape[:1] != part.shape[:1] for shape in shapes.values()):
        raise ValueError(
            f"{name}: part {tuple(part.shape)} must be (B, d) with B rows in each label, got "
            f"labels {shapes}"
        )
    if name == "pose":
        return pose_loss(part, labels["pose"])
    if name == "identity":
        triplets = identity_triplets(labels["identity"], generator)
    elif name == "expression":
        triplets = expression_triplets(
            labels["valence_arousal"], labels["expression"], generator, lambda_l
        )
    else:
        triplets = style_triplets(labels["identity"], labels["clip"], generator, style_mode)
    return _loss_of(part, triplets, margin)


def _loss_of(part: Tensor, triplets: Triplets, margin: float) -> Tensor:
    """``triplet_loss`` on the rows of ``part`` that ``triplets`` indexes."""
    anchor, positive, negative = (part[index] for index in triplets)
    return triplet_loss(anchor, positive, negative, margin)
