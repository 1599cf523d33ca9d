"""Column-wise Euclidean projection onto the l1-ball of radius mu (the P_mu of the mu-lasso solver).

Each column v of a (m, C) matrix goes to argmin_w ||w - v||_2 s.t. ||w||_1 <= mu. A column already
inside the ball is returned unchanged; otherwise the answer is the soft threshold
sign(v) max(|v| - theta, 0) whose threshold theta makes ||w||_1 = mu, found by sorting |v| (Duchi,
Shalev-Shwartz, Singer & Chandra, "Efficient projections onto the l1-ball for learning in high
dimensions", ICML 2008, Fig. 1): with u = |v| sorted in decreasing order, rho is the largest j with
u_j > (sum_{i<=j} u_i - mu) / j and theta = (sum_{i<=rho} u_i - mu) / rho. The clamp gives exact
zeros off the support, which is what makes the lasso's relevant pairs readable as non-zeros.
Cost: one sort of each column, O(m log m) per column, all columns at once, in the input's dtype
and on its device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["project_l1_ball"]


def project_l1_ball(v: Tensor, mu: float) -> Tensor:
    """Project every column of ``v`` onto {w : ||w||_1 <= mu}.

    Args:
        v: (m, C) floating-point tensor, any dtype and device.
        mu: Radius, > 0.

    Returns:
        (m, C) tensor of ``v``'s dtype and device: the columns inside the ball unchanged, the
        others soft-thresholded onto its surface (exact zeros where |v| <= theta).
    """
    if v.dim() != 2 or not v.is_floating_point():
        raise ValueError(f"expected a (m, C) floating-point tensor, got {tuple(v.shape)} {v.dtype}")
    if not mu > 0:
        raise ValueError(f"the radius mu must be > 0, got {mu}")
    magnitude = v.abs()
    inside = magnitude.sum(0) <= mu
    u = magnitude.sort(0, descending=True).values
    excess = u.cumsum(0) - mu  # sum_{i<=j} u_i - mu
    j = torch.arange(1, v.shape[0] + 1, dtype=v.dtype, device=v.device).unsqueeze(1)
    rho = ((u * j > excess) * j).amax(0, keepdim=True)  # the largest j that keeps u_j; >= 1
    theta = excess.gather(0, rho.long() - 1) / rho
    projected = v.sign() * (magnitude - theta).clamp_min(0)
    return torch.where(inside, v, projected)
