"""Which test latents the figures use, and what is computed from them (spec "Inference/uses").

- ``pick_rows``: seeded test rows whose labels meet conditions (``{"Male": 0, "Smiling": 1}``);
- ``averages``: the two- or n-face averages of Fig. 3 (incremental slerp, normalised and raw mean);
- ``raw_mean_norms``: ||sum q_i / n|| of nested random sets of n = 2..64 test faces beside
  independent uniform unit vectors (the shrinking the paper describes);
- ``arithmetic_rows`` / ``arithmetic_latents``: Fig. 4's a - b + c, b of a's identity where the
  split has one (a - b then carries the attribute, not the person);
- ``strip_person``: the test face that most of a set of edits apply to (label != target).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lightning_modules.istrc.sphere import (
    arithmetic,
    normalise,
    normalised_mean,
    raw_mean,
    slerp_mean,
)

__all__ = [
    "ARITHMETIC_SETS",
    "ArithmeticSet",
    "arithmetic_latents",
    "arithmetic_rows",
    "averages",
    "pick_rows",
    "raw_mean_norms",
    "strip_person",
]

Conditions = Mapping[str, int]
#: One arithmetic set: its title and the label conditions of a, b and c.
ArithmeticSet = tuple[str, tuple[Conditions, Conditions, Conditions]]
ARITHMETIC_SETS: tuple[ArithmeticSet, ...] = (
    (
        "smiling woman - neutral woman + neutral man",
        ({"Smiling": 1, "Male": 0}, {"Smiling": 0, "Male": 0}, {"Smiling": 0, "Male": 1}),
    ),
    (
        "woman with glasses - woman without + man without",
        ({"Eyeglasses": 1, "Male": 0}, {"Eyeglasses": 0, "Male": 0}, {"Eyeglasses": 0, "Male": 1}),
    ),
)


def _mask(labels: Tensor, names: Sequence[str], conditions: Conditions) -> Tensor:
    mask = torch.ones(labels.shape[0], dtype=torch.bool)
    for name, value in conditions.items():
        if name not in names:
            raise ValueError(f"no label {name!r}; the labels are {list(names)}")
        mask &= labels[:, list(names).index(name)] == value
    return mask


def pick_rows(
    labels: Tensor,
    names: Sequence[str],
    conditions: Conditions,
    count: int,
    generator: torch.Generator,
    exclude: Sequence[int] = (),
) -> Tensor:
    """Up to ``count`` distinct rows of ``labels`` (N, L) meeting ``conditions``, seeded order."""
    mask = _mask(labels, names, conditions)
    mask[list(exclude)] = False
    rows = mask.nonzero().flatten()
    return rows[torch.randperm(rows.numel(), generator=generator)[:count]]


def averages(q: Tensor) -> dict[str, Tensor]:
    """The average faces of n unit latents q (n, D): ``slerp`` (incremental slerp mean, the
    paper's slerp(q1, q2; 0.5) for n = 2), ``normalised`` (normalise(sum q)) and ``raw``
    (sum q / n, off the sphere)."""
    return {"slerp": slerp_mean(q), "normalised": normalised_mean(q), "raw": raw_mean(q)}


def raw_mean_norms(
    z: Tensor, sizes: Sequence[int], generator: torch.Generator
) -> dict[str, list[float]]:
    """||raw mean|| of the first n of one random order of ``z``'s rows, for n in ``sizes``; and
    of as many independent uniform unit vectors in z's dimension (whose norm is about 1/sqrt(n))."""
    if max(sizes) > z.shape[0]:
        raise ValueError(f"sizes up to {max(sizes)} need as many latents, got {z.shape[0]}")
    order = torch.randperm(z.shape[0], generator=generator)
    uniform = normalise(torch.randn(max(sizes), z.shape[1], generator=generator, dtype=z.dtype))
    faces = [raw_mean(z[order[:n]]).norm().item() for n in sizes]
    random = [raw_mean(uniform[:n]).norm().item() for n in sizes]
    return {"n": list(sizes), "faces": faces, "uniform": random}


def arithmetic_rows(
    labels: Tensor,
    identity: Tensor,
    names: Sequence[str],
    conditions: tuple[Conditions, Conditions, Conditions],
    generator: torch.Generator,
) -> tuple[int, int, int] | None:
    """Rows (a, b, c) meeting the three conditions (None if one has no row); b has a's identity
    when such a row exists."""
    first, second, third = conditions
    a_rows = pick_rows(labels, names, first, labels.shape[0], generator)
    second_mask = _mask(labels, names, second)
    for a in a_rows.tolist():  # an a whose person also has a b, if there is one
        same = (second_mask & (identity == identity[a])).nonzero().flatten()
        if same.numel():
            b = int(same[torch.randint(same.numel(), (), generator=generator)])
            break
    else:
        if a_rows.numel() == 0:
            return None
        a, b_rows = int(a_rows[0]), pick_rows(labels, names, second, 1, generator)
        if b_rows.numel() == 0:
            return None
        b = int(b_rows[0])
    c_rows = pick_rows(labels, names, third, 1, generator, exclude=(a, b))
    return None if c_rows.numel() == 0 else (int(a), b, int(c_rows[0]))


def arithmetic_latents(z: Tensor, rows: tuple[int, int, int]) -> dict[str, Tensor]:
    """a - b + c of the rows' latents, ``normalised`` (DEFAULT) and ``raw``."""
    a, b, c = (z[row] for row in rows)
    return {"normalised": arithmetic(a, b, c), "raw": arithmetic(a, b, c, renormalise=False)}


def strip_person(
    labels: Tensor,
    names: Sequence[str],
    edits: Mapping[str, int],
    generator: torch.Generator,
    exclude: Sequence[int] = (),
) -> int:
    """The test row to which most ``edits`` {attribute: target} apply (label != target); ties
    are broken at random (seeded)."""
    applies = torch.zeros(labels.shape[0])
    for name, target in edits.items():
        applies += (labels[:, list(names).index(name)] != target).float()
    applies[list(exclude)] = -math.inf
    best = (applies == applies.max()).nonzero().flatten()
    return int(best[torch.randint(best.numel(), (), generator=generator)])
