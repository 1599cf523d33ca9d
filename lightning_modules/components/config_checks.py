"""Checks of a LightningModule's own arguments that several methods share, at construction.

- ``check_loss_weights``: every loss weight is >= 0 (0 switches a term off, a negative weight
  would reward the term);
- ``check_trunk_choice``: a pretrained perceptual trunk (its file) or a random one (tests), never
  both, so a configuration does not silently train against random features. The networks
  themselves (``LPIPS``, ``GramVGG16``) refuse a missing file and a random trunk not asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["check_loss_weights", "check_trunk_choice"]


def check_loss_weights(owner: str, weights: Mapping[str, float]) -> None:
    """Raise ``ValueError`` naming ``owner`` and every negative ``name: weight``."""
    negative = {name: value for name, value in weights.items() if value < 0}
    if negative:
        raise ValueError(f"{owner}: loss weights must be >= 0, got {negative}")


def check_trunk_choice(owner: str, perceptual_weights: str | None, random_trunks: bool) -> None:
    """Raise ``ValueError`` when both a trunk file and ``random_trunks=True`` are given."""
    if random_trunks and perceptual_weights is not None:
        raise ValueError(
            f"{owner}: give perceptual_weights or random_trunks=True (tests), not both: "
            "set --model.init_args.perceptual_weights=null with random trunks"
        )
