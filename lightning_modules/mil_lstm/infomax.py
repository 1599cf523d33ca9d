"""Deep InfoMax regularizer on an instance encoder (Hjelm et al. 2019), as used for MIL bags.

Two variants (thesis ch. 7, Eq. 7.1; L = 0.5 GLOBAL + 1.0 LOCAL + 0.1 PRIOR by default):

- ``thesis`` (the author's released code, which produced the thesis numbers): the global
  discriminator scores the pair (y, y) against (y, y') -- the feature paired with itself -- and
  the prior term is minimized jointly by encoder and discriminator (cooperative).
- ``standard`` (Hjelm et al.): the global discriminator scores (y, flattened local map M) against
  (y, M'), and the prior term is adversarial (a gradient-reversal layer in front of D_p).

Negatives (y', M') come from a random permutation of the instances *within each bag*. The
mutual-information estimates use the Jensen-Shannon (softplus) form: E_m - E_j with
E_j = -softplus(-T(joint)).mean() and E_m = softplus(T(marginal)).mean().
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return -grad


def _mlp(in_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 1)
    )


def jsd_mi_loss(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """Negative JSD mutual-information estimate: softplus(T_m).mean() + softplus(-T_j).mean()."""
    return F.softplus(marginal).mean() + F.softplus(-joint).mean()


def permute_within_groups(groups: torch.Tensor) -> torch.Tensor:
    """Random permutation ``p`` of 0..N-1 with ``groups[p] == groups`` (shuffles inside bags)."""
    keys = groups.double()
    in_order = torch.argsort(keys, stable=True)
    shuffled = torch.argsort(keys + 0.5 * torch.rand(len(groups), device=groups.device).double())
    perm = torch.empty_like(in_order)
    perm[in_order] = shuffled
    return perm


class InstanceInfoMax(nn.Module):
    """DIM loss on instance features y (N, D) and local maps M (N, C, h, w).

    Args:
        feature_dim: D, size of the global feature y.
        local_channels: C of the local map M.
        local_size: h * w of M (16 for LeNet's 4x4 map).
        variant: ``thesis`` (default, the author's code) or ``standard`` (Hjelm et al.).
        global_weight / local_weight / prior_weight: alpha, beta, gamma of Eq. 7.1.
    """

    def __init__(
        self,
        feature_dim: int = 500,
        local_channels: int = 50,
        local_size: int = 16,
        variant: Literal["thesis", "standard"] = "thesis",
        global_weight: float = 0.5,
        local_weight: float = 1.0,
        prior_weight: float = 0.1,
    ) -> None:
        super().__init__()
        if variant not in ("thesis", "standard"):
            raise ValueError(f"variant must be 'thesis' or 'standard', got {variant!r}")
        self.variant = variant
        self.weights = (global_weight, local_weight, prior_weight)
        pair_dim = feature_dim if variant == "thesis" else local_channels * local_size
        self.global_d = _mlp(feature_dim + pair_dim)
        self.local_d = nn.Sequential(
            nn.Conv2d(feature_dim + local_channels, 512, 1),
            nn.ReLU(),
            nn.Conv2d(512, 128, 1),
            nn.ReLU(),
            nn.Conv2d(128, 1, 1),
        )
        self.prior_d = _mlp(feature_dim)  # logits of D_p

    def forward(
        self, y: torch.Tensor, local: torch.Tensor, groups: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``global``, ``local``, ``prior`` terms and their weighted sum ``loss``.

        Args:
            y: Instance features (N, D).
            local: Local maps (N, C, h, w).
            groups: Bag index of each instance (N,); negatives are drawn within a bag.
        """
        perm = permute_within_groups(groups)
        if self.variant == "thesis":
            partner, partner_neg = y, y[perm]
        else:
            partner, partner_neg = local.flatten(1), local[perm].flatten(1)
        global_term = jsd_mi_loss(
            self.global_d(torch.cat([y, partner], 1)), self.global_d(torch.cat([y, partner_neg], 1))
        )
        y_map = y[:, :, None, None].expand(-1, -1, *local.shape[2:])
        local_term = jsd_mi_loss(
            self.local_d(torch.cat([y_map, local], 1)),
            self.local_d(torch.cat([y_map, local[perm]], 1)),
        )
        prior_term = self._prior(y)
        a, b, c = self.weights
        loss = a * global_term + b * local_term + c * prior_term
        return {"global": global_term, "local": local_term, "prior": prior_term, "loss": loss}

    def _prior(self, y: torch.Tensor) -> torch.Tensor:
        """-(E log D_p(u) + E log(1 - D_p(y))), u ~ U[0, 1)^D."""
        if self.variant == "standard":
            y = _GradReverse.apply(y)
        u = torch.rand_like(y)
        return F.softplus(-self.prior_d(u)).mean() + F.softplus(self.prior_d(y)).mean()
