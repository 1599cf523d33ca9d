"""Feature blocks of the disentangled code f: one sub-vector, all but one, or a concatenation.

The evaluations of the ``disentangle`` spec (section 6) read f = (f_p | f_id | f_e | f_s) through
named blocks, written as strings so that tables, options and figure labels share one spelling:

- ``"identity"``: the sub-vector f_id;
- ``"-identity"``: every other part, concatenated in f's order (Table 2's
  f_-id = (f_p, f_e, f_s), 67-d; Table 3's f_-e = (f_p, f_id, f_s));
- ``"pose+identity"``: the named parts concatenated in the order written (retrieval on a
  concatenation, section 5).

``block_label`` writes a block the way the paper does: f_p, f_id, f_e, f_s, f_-id, f_p+id.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_modules.disentangled_aae.factor_split import FactorSplit

__all__ = [
    "FACTOR_BLOCKS",
    "SHORT_NAMES",
    "TABLE2_BLOCKS",
    "TABLE3_BLOCKS",
    "block_label",
    "block_parts",
    "feature_block",
]

SHORT_NAMES: dict[str, str] = {"pose": "p", "identity": "id", "expression": "e", "style": "s"}
"""The paper's subscripts of the four parts."""

FACTOR_BLOCKS: tuple[str, ...] = ("pose", "identity", "expression", "style")
"""The four sub-vectors, in f's order."""

TABLE2_BLOCKS: tuple[str, ...] = ("pose", "expression", "style", "-identity", "identity")
"""Table 2's columns (verification accuracy): f_p, f_e, f_s, f_-id, f_id."""

TABLE3_BLOCKS: tuple[str, ...] = ("pose", "identity", "style", "-expression", "expression")
"""Table 3's rows (expression AUC): f_p, f_id, f_s, f_-e, f_e."""


def block_parts(split: FactorSplit, block: str) -> tuple[str, ...]:
    """The part names a block concatenates, in order.

    Args:
        split: The split of f.
        block: ``"name"``, ``"-name"`` (all parts but ``name``, in f's order) or
            ``"a+b+..."`` (the named parts in the order written, each once).
    """
    if not isinstance(block, str) or not block:
        raise ValueError(f"a feature block must be a non-empty string, got {block!r}")
    if block.startswith("-"):
        left_out = block[1:]
        _check_names(split, (left_out,), block)
        parts = tuple(name for name in split.names if name != left_out)
        if not parts:
            raise ValueError(f"block {block!r} leaves no part of the split {split.names}")
        return parts
    parts = tuple(block.split("+"))
    _check_names(split, parts, block)
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise ValueError(f"block {block!r} names {repeated} more than once")
    return parts


def feature_block(f: Tensor, split: FactorSplit, block: str) -> Tensor:
    """The block's columns of f: (N, dim) -> (N, width of the block's parts).

    Args:
        f: Codes (N, ``split.dim``).
        split: The split of f.
        block: See ``block_parts``.
    """
    parts = block_parts(split, block)
    return torch.cat([split.part(f, name) for name in parts], dim=-1)


def block_label(block: str) -> str:
    """The paper's name of a block: ``"-identity"`` -> ``"f_-id"``, ``"pose+style"`` ->
    ``"f_p+s"``; a part without a paper subscript keeps its name."""
    if block.startswith("-"):
        return f"f_-{SHORT_NAMES.get(block[1:], block[1:])}"
    return "f_" + "+".join(SHORT_NAMES.get(name, name) for name in block.split("+"))


def _check_names(split: FactorSplit, names: tuple[str, ...], block: str) -> None:
    unknown = [name for name in names if name not in split.names]
    if unknown:
        raise ValueError(f"block {block!r}: unknown part(s) {unknown}; the split has {split.names}")
