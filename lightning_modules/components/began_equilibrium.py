"""BEGAN's equilibrium controller: the balance variable k_t and the convergence measure.

Berthelot et al., "BEGAN: Boundary Equilibrium Generative Adversarial Networks", 2017,
arXiv:1703.10717, Eqs. 4 and 5 (the ``istrc`` spec, section 4): the discriminator minimizes
L(x) - k_t * L(G(z)) (``adversarial_losses.began_discriminator_loss``), and after each step

    k_{t+1} = clip(k_t + lambda_k * (gamma * L(x) - L(G(z))), 0, 1)
    M_global = L(x) + |gamma * L(x) - L(G(z))|

k_t is a buffer: checkpointed with the module and moved with ``.to(device)``. The update works
on tensors on the buffer's device (no host synchronization); it is not synchronized across
processes, so under DDP give it losses that are equal on every rank (e.g. all-reduced means).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BEGANEquilibrium"]


class BEGANEquilibrium(nn.Module):
    """The balance variable k_t of BEGAN, a scalar buffer ``k``, and its proportional control.

    Args:
        gamma: Diversity ratio gamma in (0, 1], the target of E[L(G(z))] / E[L(x)].
        lambda_k: Proportional gain lambda_k > 0 of the k_t update.
        k_init: k_0 in [0, 1].
    """

    k: Tensor

    def __init__(self, gamma: float = 0.5, lambda_k: float = 0.001, k_init: float = 0.0) -> None:
        super().__init__()
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if not lambda_k > 0.0:
            raise ValueError(f"lambda_k must be > 0, got {lambda_k}")
        if not 0.0 <= k_init <= 1.0:
            raise ValueError(f"k_init must be in [0, 1], got {k_init}")
        self.gamma = gamma
        self.lambda_k = lambda_k
        self.register_buffer("k", torch.tensor(float(k_init)))

    def update(self, loss_real: Tensor, loss_fake: Tensor) -> Tensor:
        """Advance k_t in place from this step's losses; return M_global (detached).

        Args:
            loss_real: L(x), the scalar auto-encoder loss of real images.
            loss_fake: L(G(z)), the scalar auto-encoder loss of generated images.
        """
        if loss_real.dim() != 0 or loss_fake.dim() != 0:
            raise ValueError(
                f"loss_real and loss_fake must be scalars, got shapes {tuple(loss_real.shape)} "
                f"and {tuple(loss_fake.shape)}"
            )
        real, fake = loss_real.detach(), loss_fake.detach()
        balance = self.gamma * real - fake
        with torch.no_grad():
            self.k.add_(self.lambda_k * balance).clamp_(0.0, 1.0)
        return real + balance.abs()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, lambda_k={self.lambda_k}"
