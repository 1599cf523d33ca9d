"""L_Phi, the disentanglement objective of Stages B and C (the paper's Eqs. 6-10 and 14).

For codes z = E(x) of one labelled batch, f = Phi(z) and

    L_Phi = lambda_rec L_rec^Phi + L_fk^Phi + L_cyc^Phi + L_aug^Phi                      (Eq. 14)

- L_rec^Phi = mean |z - Phi^-1(Phi(z))| (Eq. 6);
- L_fk^Phi = sum over the factors the batch labels of F_k(f_k, y_k) (Eq. 7; ``factor_losses``);
- for each cycled factor k (one drawn uniformly per iteration, or all: ``cycle_attrs``) and a
  random batch permutation pi: f* = f with f*_k = f[pi, k], I(f*) = Phi(E(G(Phi^-1(f*)))),
  L_cyc = mean |f* - I(f*)| with f* detached (Eqs. 8-9), and, when the batch labels k,
  L_aug = F_k(I(f*)_k, y[pi]) (Eq. 10).

Which factors a batch labels depends on its source (spec section 4): identity batches train pose
and identity, expression batches pose and expression, style batches pose and style
(``SOURCE_FACTORS``). ``reencode`` is x -> E(G(x)) as the stage has it: frozen in Stage B (still
differentiable), trained in Stage C.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lightning_modules.disentangled_aae.cycle import cycle_loss, permute_factor, random_permutation
from lightning_modules.disentangled_aae.factor_losses import factor_loss
from lightning_modules.disentangled_aae.factor_split import FactorSplit
from lightning_modules.disentangled_aae.triplets import StyleMode

__all__ = ["SOURCE_FACTORS", "FactorTerms", "cycled_factors", "factor_objective"]

#: The factors each label source trains (its batches carry their labels).
SOURCE_FACTORS: dict[str, tuple[str, ...]] = {
    "identity": ("pose", "identity"),
    "expression": ("pose", "expression"),
    "style": ("pose", "style"),
}


class FactorTerms(NamedTuple):
    """L_Phi and its terms (scalars; ``task`` is the sum over the labelled factors)."""

    total: Tensor
    rec: Tensor
    task: Tensor
    cyc: Tensor
    aug: Tensor
    per_factor: dict[str, Tensor]


def cycled_factors(
    split: FactorSplit, mode: Literal["random", "all"], generator: torch.Generator
) -> tuple[str, ...]:
    """The factors to cycle this iteration: one drawn uniformly (``random``) or every one."""
    if mode == "all":
        return split.names
    if mode != "random":
        raise ValueError(f"cycle_attrs must be 'random' or 'all', got {mode!r}")
    index = int(torch.randint(len(split.names), (1,), generator=generator))
    return (split.names[index],)


def factor_objective(
    z: Tensor,
    phi: Callable[[Tensor], Tensor],
    phi_inverse: Callable[[Tensor], Tensor],
    reencode: Callable[[Tensor], Tensor],
    split: FactorSplit,
    labels: Mapping[str, Tensor],
    factors: Sequence[str],
    cycled: Sequence[str],
    generator: torch.Generator,
    lambda_rec: float = 1.0,
    margin: float = 1.0,
    lambda_l: float = 0.25,
    style_mode: StyleMode = "same_clip_pos",
) -> FactorTerms:
    """L_Phi (Eq. 14) of one batch.

    Args:
        z: Codes E(x) (B, dim).
        phi: Phi, z -> f.
        phi_inverse: Phi^-1, f -> z.
        reencode: z -> E(G(z)).
        split: The named parts of f.
        labels: The batch's label tensors by key (``factor_losses.LABEL_KEYS``).
        factors: The factors this batch labels (``SOURCE_FACTORS[source]``).
        cycled: The factors to cycle (``cycled_factors``).
        generator: Source of the permutations and triplet draws (CPU).
        lambda_rec: Weight of L_rec^Phi (1.0 [default]).
        margin: Triplet margin delta_k (1.0 [default]).
        lambda_l: Category weight of Eq. 13 (0.25).
        style_mode: Reading of the style triplet (spec section 8 item 1).
    """
    options = {"margin": margin, "lambda_l": lambda_l, "style_mode": style_mode}
    f = phi(z)
    rec = (z - phi_inverse(f)).abs().mean()
    per_factor = {
        k: factor_loss(k, split.part(f, k), labels, generator, **options) for k in factors
    }
    task = sum(per_factor.values(), z.new_zeros(()))
    cyc, aug = z.new_zeros(()), z.new_zeros(())
    for k in cycled:
        permutation = random_permutation(z.shape[0], generator, z.device)
        f_star = permute_factor(f, split, k, permutation)
        f_cycled = phi(reencode(phi_inverse(f_star)))
        cyc = cyc + cycle_loss(f_star, f_cycled)
        if k in factors:
            permuted = {key: value[permutation] for key, value in labels.items()}
            aug = aug + factor_loss(k, split.part(f_cycled, k), permuted, generator, **options)
    total = lambda_rec * rec + task + cyc + aug
    return FactorTerms(total, rec, task, cyc, aug, per_factor)
