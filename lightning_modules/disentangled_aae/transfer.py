"""Attribute transfer by swapping sub-vectors of f (``disentangle`` spec section 5, Fig. 5).

With f = Phi(E(x)) of a source and a target image, one part k of f moves between them and the
result is decoded with G(Phi^-1(f_new)):

- ``transfer`` (Fig. 5 rows 1-4): f_new = f_target with f_new,k <- f_source,k, i.e. the target
  takes the source's pose / identity / expression / style;
- ``all_except`` (rows 5-8): f_new = f_source with f_new,k <- f_target,k, i.e. everything but k
  comes from the source;
- ``transfer_rows``: the eight rows in the figure's order, with their titles;
- ``frontalise``: f_p := 0, since f_p is in angle units (a suite extra of section 5).

All are pure functions of f tensors (B, dim), row i of the source paired with row i of the target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_modules.disentangled_aae.factor_split import FactorSplit

__all__ = ["all_except", "frontalise", "transfer", "transfer_rows"]


def transfer(f_target: Tensor, f_source: Tensor, split: FactorSplit, name: str) -> Tensor:
    """f_target with part ``name`` taken from f_source (Fig. 5 rows 1-4).

    Args:
        f_target: Codes (B, dim) that keep every other part.
        f_source: Codes (B, dim) that give part ``name``, row i to row i.
        split: The split of f.
        name: The part moved (``"pose"``, ``"identity"``, ``"expression"``, ``"style"``).
    """
    _check_pair(f_target, f_source)
    return split.replace(f_target, name, split.part(f_source, name))


def all_except(f_source: Tensor, f_target: Tensor, split: FactorSplit, name: str) -> Tensor:
    """f_source with part ``name`` taken from f_target: all but ``name`` from the source (rows 5-8).

    Args:
        f_source: Codes (B, dim) that give every part but ``name``.
        f_target: Codes (B, dim) that keep part ``name``, row i to row i.
        split: The split of f.
        name: The part that stays the target's.
    """
    _check_pair(f_source, f_target)
    return split.replace(f_source, name, split.part(f_target, name))


def transfer_rows(
    f_source: Tensor, f_target: Tensor, split: FactorSplit
) -> list[tuple[str, Tensor]]:
    """The edited codes of Fig. 5, one ``(title, f_new (B, dim))`` per row.

    Rows 1 to K (K = number of parts, 4): ``transfer`` of each part from the source, titled
    ``"<part> from source"``; rows K + 1 to 2K: ``all_except`` each part, titled
    ``"all but <part> from source"``. Parts in the split's order.

    Args:
        f_source: Codes (B, dim) of the source images.
        f_target: Codes (B, dim) of the target images.
        split: The split of f.
    """
    rows = [(f"{k} from source", transfer(f_target, f_source, split, k)) for k in split.names]
    rows += [
        (f"all but {k} from source", all_except(f_source, f_target, split, k)) for k in split.names
    ]
    return rows


def frontalise(f: Tensor, split: FactorSplit, name: str = "pose") -> Tensor:
    """f with its pose part set to 0 (yaw = pitch = roll = 0: a frontal face).

    Args:
        f: Codes (B, dim).
        split: The split of f.
        name: The pose part's name.
    """
    part = split.part(f, name)
    return split.replace(f, name, torch.zeros_like(part))


def _check_pair(f_a: Tensor, f_b: Tensor) -> None:
    if f_a.shape != f_b.shape:
        raise ValueError(
            f"source and target codes must have one shape (row i pairs with row i), got "
            f"{tuple(f_a.shape)} and {tuple(f_b.shape)}"
        )
