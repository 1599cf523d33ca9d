"""The batch-permutation edit and the cycle loss of Stage B (spec ``disentangle`` Eqs. 8-10).

For a factor k and a permutation pi of the batch, f* is f with its k-th sub-vector shuffled
across the batch, row i taking sample pi(i)'s (f*_k = f[pi, k]); every other sub-vector is
unchanged. The method decodes and re-encodes f*, I(f*) = Phi(E(G(Phi^-1(f*)))) (Eq. 9), and

    L_cyc = mean over the batch and all 99 dims of |f* - I(f*)|      (Eq. 8)

with f* detached [default, spec section 8 item 8]: the loss trains the round trip to reproduce
the edit, not the edit to be easy to reproduce. Row i of I(f*)_k should then carry sample
pi(i)'s factor k, so L_aug (Eq. 10) is ``factor_loss(k, I(f*)_k, labels[pi])``: every label
tensor indexed by the same ``permutation``, no helper needed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_modules.disentangled_aae.factor_split import FactorSplit

__all__ = ["cycle_loss", "permute_factor", "random_permutation"]


def random_permutation(
    n: int, generator: torch.Generator, device: torch.device | str | None = None
) -> Tensor:
    """A uniformly random permutation of range(n), long (n,), drawn from ``generator``.

    Args:
        n: Batch size (>= 0).
        generator: Source of the draw (the permutation is made on its device).
        device: Where to put the result; None keeps the generator's device.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    permutation = torch.randperm(n, generator=generator, device=generator.device)
    return permutation if device is None else permutation.to(device, non_blocking=True)


def permute_factor(f: Tensor, split: FactorSplit, name: str, permutation: Tensor) -> Tensor:
    """f* (B, dim): f with sub-vector ``name`` taken row-wise from ``permutation``'s rows.

    Row i of the result is f[i] except for part ``name``, which is f[permutation[i], name]. ``f``
    is not modified. That ``permutation`` is a permutation is not checked (a host sync); any
    long (B,) index of rows in range works.

    Args:
        f: Codes (B, dim).
        split: The named parts of f.
        name: The factor to shuffle.
        permutation: long (B,) row indices.
    """
    if f.ndim != 2:
        raise ValueError(f"f must be (B, dim), got {tuple(f.shape)}")
    if permutation.shape != (f.shape[0],) or permutation.dtype != torch.long:
        raise ValueError(
            f"permutation must be long ({f.shape[0]},), got {permutation.dtype} "
            f"{tuple(permutation.shape)}"
        )
    return split.replace(f, name, split.part(f, name)[permutation])


def cycle_loss(f_star: Tensor, f_cycled: Tensor) -> Tensor:
    """L_cyc = mean |f* - I(f*)| over the batch and every dim, f* detached (Eq. 8).

    Args:
        f_star: The edited codes f* (B, dim); no gradient reaches them through this loss.
        f_cycled: I(f*) (B, dim), the decoded and re-encoded edit.
    """
    if f_star.shape != f_cycled.shape:
        raise ValueError(
            f"f_star {tuple(f_star.shape)} and f_cycled {tuple(f_cycled.shape)} must match"
        )
    return (f_cycled - f_star.detach()).abs().mean()
