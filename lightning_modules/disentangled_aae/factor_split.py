"""The split of the disentangled code f into named sub-vectors (spec ``disentangle`` section 3).

Phi maps the autoencoder code z (99-d) to f = (f_p | f_id | f_e | f_s), sizes 3 / 32 / 32 / 32
in that order [paper sizes, default order]: f_p = f[:, 0:3] (pose, in radians), f_id = f[:, 3:35],
f_e = f[:, 35:67], f_s = f[:, 67:99]. ``FactorSplit`` names these slices once, so that the
losses, the cycle edit (``cycle.py``) and the evaluation read the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FactorSplit"]


@dataclass(frozen=True)
class FactorSplit:
    """Named, contiguous parts of the last dimension of f, in order.

    Args:
        sizes: Width of each part (positive integers).
        names: Name of each part (unique, as many as ``sizes``).

    Example:
        >>> split = FactorSplit()
        >>> split.dim, split.slice("identity")
        (99, slice(3, 35, None))
    """

    sizes: tuple[int, ...] = (3, 32, 32, 32)
    names: tuple[str, ...] = ("pose", "identity", "expression", "style")

    def __post_init__(self) -> None:
        # Accept lists (a YAML value) but store tuples, so the split stays hashable and frozen.
        object.__setattr__(self, "sizes", tuple(self.sizes))
        object.__setattr__(self, "names", tuple(self.names))
        if not self.sizes:
            raise ValueError("a FactorSplit needs at least one part, got no sizes")
        if len(self.sizes) != len(self.names):
            raise ValueError(
                f"sizes {self.sizes} and names {self.names} must have the same length "
                f"({len(self.sizes)} != {len(self.names)})"
            )
        bad = [s for s in self.sizes if isinstance(s, bool) or not isinstance(s, int) or s <= 0]
        if bad:
            raise ValueError(f"every size must be a positive integer, got {bad} in {self.sizes}")
        bad_names = [n for n in self.names if not isinstance(n, str) or not n]
        if bad_names:
            raise ValueError(f"every name must be a non-empty string, got {bad_names}")
        repeated = sorted({n for n in self.names if self.names.count(n) > 1})
        if repeated:
            raise ValueError(f"names must be unique, {repeated} repeat in {self.names}")

    @property
    def dim(self) -> int:
        """Width of f: the sum of the sizes (99 for the paper's split)."""
        return sum(self.sizes)

    def slice(self, name: str) -> slice:
        """The columns of part ``name`` in f, e.g. ``slice(3, 35)`` for "identity".

        Args:
            name: One of ``names``.
        """
        if name not in self.names:
            raise ValueError(f"unknown factor {name!r}; the split has {self.names}")
        index = self.names.index(name)
        start = sum(self.sizes[:index])
        return slice(start, start + self.sizes[index])

    def part(self, f: Tensor, name: str) -> Tensor:
        """The sub-vector f_name: (B, dim) -> (B, size of name) (any leading dims are kept).

        Args:
            f: Codes whose last dimension is ``dim``.
            name: One of ``names``.
        """
        self._check_width(f)
        return f[..., self.slice(name)]

    def replace(self, f: Tensor, name: str, values: Tensor) -> Tensor:
        """A copy of f with part ``name`` set to ``values``; ``f`` itself is left unchanged.

        Built by concatenation, so gradients flow to ``values`` and to the kept parts of ``f``.

        Args:
            f: Codes (B, dim).
            name: One of ``names``.
            values: The new part, (B, size of name): ``f``'s shape with the last dim the part's.
        """
        self._check_width(f)
        columns = self.slice(name)
        expected = (*f.shape[:-1], columns.stop - columns.start)
        if tuple(values.shape) != expected:
            raise ValueError(
                f"values for {name!r} must have shape {expected}, got {tuple(values.shape)}"
            )
        before, after = f[..., : columns.start], f[..., columns.stop :]
        return torch.cat([before, values.to(f.dtype), after], dim=-1)

    def _check_width(self, f: Tensor) -> None:
        if f.ndim < 1 or f.shape[-1] != self.dim:
            raise ValueError(
                f"f must have last dimension {self.dim} (sizes {self.sizes}), got shape "
                f"{tuple(f.shape)}"
            )
