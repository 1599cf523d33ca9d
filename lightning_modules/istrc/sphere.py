"""Geometry of ISTRC's latent space, the unit hypersphere S^(D-1) (spec "Inference/uses").

Every function takes latents (..., D), float32 or float64, on any device, and returns tensors of
the same dtype and device. Interpolation (PAPER eq. 2, Shoemake's slerp, with the spec's reading
sin((1 - mu) theta) of the OCR's "sin(1 - mu) theta"), the n-face averages, latent arithmetic and
noise variations follow the spec's DEFAULTs where the paper is silent.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "arithmetic",
    "interpolation_mus",
    "lerp",
    "normalise",
    "normalised_mean",
    "noise_variations",
    "raw_mean",
    "slerp",
    "slerp_mean",
]

LERP_BELOW = 1e-6  # theta (rad) under which slerp falls back to lerp (spec)
ANTIPODAL_WITHIN = 1e-6  # theta (rad) this close to pi is refused: no unique great circle


def normalise(z: Tensor, eps: float = 1e-12) -> Tensor:
    """z / max(||z||_2, eps) along the last dim: each row onto the unit sphere.

    Example:
        >>> normalise(torch.tensor([[3.0, 4.0]]))
        tensor([[0.6000, 0.8000]])
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    _check_latents(z=z)
    return F.normalize(z, dim=-1, eps=eps)


def slerp(q1: Tensor, q2: Tensor, mu: float | Tensor) -> Tensor:
    """Spherical linear interpolation (PAPER eq. 2) from q1 (mu = 0) to q2 (mu = 1).

        theta = arccos(clamp(q1 . q2, -1, 1))
        slerp(q1, q2; mu) = sin((1 - mu) theta) / sin(theta) q1 + sin(mu theta) / sin(theta) q2

    theta is read from the normalised rows, which is q1 . q2 for the paper's unit vectors. Rows
    with theta < 1e-6 take lerp, (1 - mu) q1 + mu q2. Antipodal rows (theta within 1e-6 of pi)
    raise ValueError: every great circle through opposite points is a shortest path, so the
    formula's 0 / 0 has no answer to return.

    Args:
        q1, q2: Unit latents of one shape (..., D).
        mu: In [0, 1]: a float (or 0-d tensor) gives (..., D); a 1-d tensor of M values gives
            (M, ..., D), one row per mu.

    Example:
        >>> q1, q2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
        >>> slerp(q1, q2, 0.5)
        tensor([0.7071, 0.7071])
        >>> slerp(q1, q2, torch.tensor([0.0, 1.0]))
        tensor([[1., 0.],
                [0., 1.]])
    """
    _check_latents(q1=q1, q2=q2)
    weight = _mu_weight(mu, q1)
    cosine = (normalise(q1) * normalise(q2)).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(cosine)  # (..., 1)
    antipodal = theta > math.pi - ANTIPODAL_WITHIN
    if bool(antipodal.any()):
        raise ValueError(
            f"q1 and q2 are antipodal (theta = pi) in {int(antipodal.sum())} of "
            f"{antipodal.numel()} rows: slerp has no unique path between opposite points"
        )
    near = theta < LERP_BELOW
    sin_theta = torch.where(near, torch.ones_like(theta), torch.sin(theta))
    w1 = torch.where(near, 1 - weight, torch.sin((1 - weight) * theta) / sin_theta)
    w2 = torch.where(near, weight, torch.sin(weight * theta) / sin_theta)
    return w1 * q1 + w2 * q2


def lerp(q1: Tensor, q2: Tensor, mu: float | Tensor, renormalise: bool = False) -> Tensor:
    """Linear interpolation (1 - mu) q1 + mu q2, onto the sphere again if ``renormalise``.

    Shapes as in ``slerp``. Without renormalising, the path cuts the chord inside the sphere.

    Example:
        >>> q1, q2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
        >>> lerp(q1, q2, 0.5)
        tensor([0.5000, 0.5000])
        >>> lerp(q1, q2, 0.5, renormalise=True)
        tensor([0.7071, 0.7071])
    """
    _check_latents(q1=q1, q2=q2)
    weight = _mu_weight(mu, q1)
    mixed = (1 - weight) * q1 + weight * q2
    return normalise(mixed) if renormalise else mixed


def interpolation_mus(
    frames: int = 10, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """The ``frames`` interpolation weights 0, 1/(frames - 1), ..., 1 (DEFAULT 10 frames).

    Example:
        >>> interpolation_mus(4, dtype=torch.float64)
        tensor([0.0000, 0.3333, 0.6667, 1.0000], dtype=torch.float64)
    """
    if frames < 2:
        raise ValueError(f"frames must be >= 2 (both endpoints), got {frames}")
    return torch.linspace(0.0, 1.0, frames, dtype=dtype, device=device)


def slerp_mean(q: Tensor) -> Tensor:
    """Incremental spherical mean of n unit latents q (n, ..., D) -> (..., D) (DEFAULT).

        m_1 = q_1,   m_j = slerp(m_{j-1}, q_j; 1 / j),   j = 2..n

    For n = 2 it is the paper's average slerp(q_1, q_2; 0.5) = normalise(q_1 + q_2). For n > 2 it
    depends on the order of q (it is not the Karcher mean); it stays on the sphere.

    Example:
        >>> slerp_mean(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([0.7071, 0.7071])
    """
    _check_stack(q)
    mean = q[0]
    for j in range(1, q.shape[0]):
        try:
            mean = slerp(mean, q[j], 1.0 / (j + 1))
        except ValueError as error:
            raise ValueError(f"q: the running mean of q[:{j}] and q[{j}]: {error}") from error
    return mean


def normalised_mean(q: Tensor, eps: float = 1e-12) -> Tensor:
    """normalise(sum_i q_i): the mean direction of q (n, ..., D) -> (..., D).

    Example:
        >>> normalised_mean(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        tensor([0.8944, 0.4472])
    """
    _check_stack(q)
    return normalise(q.sum(dim=0), eps)


def raw_mean(q: Tensor) -> Tensor:
    """sum_i q_i / n, off the sphere: its norm shrinks towards 0 as n grows (PAPER section 4.2).

    Example:
        >>> raw_mean(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([0.5000, 0.5000])
    """
    _check_stack(q)
    return q.mean(dim=0)


def arithmetic(a: Tensor, b: Tensor, c: Tensor, renormalise: bool = True) -> Tensor:
    """Latent arithmetic a - b + c, normalised (DEFAULT) or raw (``renormalise=False``).

    E.g. smiling woman - neutral woman + neutral man (PAPER section 4.3, Fig. 8).

    Example:
        >>> a, b, c = torch.eye(3)
        >>> arithmetic(a, b, c)
        tensor([ 0.5774, -0.5774,  0.5774])
    """
    _check_latents(a=a, b=b, c=c)
    result = a - b + c
    return normalise(result) if renormalise else result


def noise_variations(
    z: Tensor, count: int = 63, sigma: float = 0.02, generator: torch.Generator | None = None
) -> Tensor:
    """``count`` noisy copies normalise(z + eps_j), eps_j ~ N(0, sigma^2 I): (count, ..., D).

    The noise comes from ``generator`` only (drawn on its device, then moved to z's), never from
    the global RNG; None means a fresh generator seeded 0, so the default grid is reproducible.
    Fig. 6 shows z and 63 variations in an 8 x 8 grid.

    Example:
        >>> z = normalise(torch.ones(4))
        >>> variations = noise_variations(z, count=3, generator=torch.Generator().manual_seed(1))
        >>> variations.shape, bool(torch.allclose(variations.norm(dim=-1), torch.ones(3)))
        (torch.Size([3, 4]), True)
    """
    _check_latents(z=z)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    noise = torch.randn(
        (count, *z.shape), generator=generator, dtype=z.dtype, device=generator.device
    )
    return normalise(z + sigma * noise.to(z.device))


def _mu_weight(mu: float | Tensor, like: Tensor) -> Tensor:
    """mu as a tensor that broadcasts against ``like``: 0-d, or (M, 1, ..., 1) for M values."""
    weight = torch.as_tensor(mu, dtype=like.dtype, device=like.device)
    if weight.ndim > 1:
        raise ValueError(f"mu must be a float or a 1-d tensor, got shape {tuple(weight.shape)}")
    if not bool(((weight >= 0) & (weight <= 1)).all()):
        raise ValueError(f"mu must lie in [0, 1], got {mu}")
    return weight.reshape(-1, *([1] * like.ndim)) if weight.ndim == 1 else weight


def _check_latents(**latents: Tensor) -> None:
    """Every tensor floating point (..., D) with the shape and dtype of the first one."""
    (first_name, first), *others = latents.items()
    if not first.is_floating_point() or first.ndim < 1:
        raise ValueError(
            f"{first_name} must be a float tensor (..., D), got {first.dtype} {tuple(first.shape)}"
        )
    for name, latent in others:
        if latent.shape != first.shape or latent.dtype != first.dtype:
            raise ValueError(
                f"{name} must match {first_name}'s {first.dtype} {tuple(first.shape)}, got "
                f"{latent.dtype} {tuple(latent.shape)}"
            )


def _check_stack(q: Tensor) -> None:
    """q is n >= 1 latents stacked along dim 0: (n, ..., D)."""
    if not q.is_floating_point() or q.ndim < 2 or q.shape[0] < 1:
        raise ValueError(
            f"q must be a float tensor (n >= 1, ..., D), got {q.dtype} {tuple(q.shape)}"
        )
