"""One optimizer's update in a manually optimized module: the GAN training pattern of this suite.

A GAN step updates several players in turn (discriminators, then encoder + generator, ...), each
with its own optimizer. ``network_update`` is the one place that does such an update, so every
adversarial method does it the same way:

1. Freeze what the update must not change: inside Lightning's ``toggled_optimizer`` every
   parameter that belongs to another optimizer has ``requires_grad=False``, so the loss's graph,
   and its backward, reach only this optimizer's networks (a generator's loss passes through the
   discriminator without giving it gradients; a discriminator's loss does not reach the generator).
2. Detach the fakes: the tensors passed after ``loss_fn`` reach it detached. A discriminator's
   loss takes the generator's outputs this way; what a loss needs with its graph (the generator's
   own update) it closes over instead.
3. ``zero_grad`` -> backward -> optional gradient clipping -> ``step``. The backward is
   ``components.manual_ddp.partial_backward``: under DDP an update that reaches part of the model
   (a discriminator's) averages exactly its own gradients across processes; on one device it is
   ``manual_backward`` (mixed-precision loss scaling included).

Example (the order of updates, n_critic loops and the loss terms stay in the method)::

    fake = self.generator(z)                                  # with its graph, computed once
    loss_d = network_update(self, opt_d, lambda f: d_loss(self.discriminator(real),
                                                          self.discriminator(f)), fake)
    loss_g = network_update(self, opt_g, lambda: g_loss(self.discriminator(fake)))
"""

from __future__ import annotations

from collections.abc import Callable

from lightning import LightningModule
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor
from torch.optim import Optimizer

from lightning_modules.components.manual_ddp import partial_backward

__all__ = ["network_update", "optimizer_parameters"]


def optimizer_parameters(optimizer: Optimizer | LightningOptimizer) -> list:
    """The parameters of ``optimizer`` that currently require a gradient, in group order."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


def network_update(
    module: LightningModule,
    optimizer: Optimizer | LightningOptimizer,
    loss_fn: Callable[..., Tensor],
    *detached: Tensor,
    gradient_clip_val: float | None = None,
) -> Tensor:
    """Update the networks ``optimizer`` holds on ``loss_fn(*detached inputs)``; return the loss.

    Args:
        module: The manually optimized LightningModule (``automatic_optimization = False``),
            attached to a Trainer.
        optimizer: One of ``module.optimizers()``.
        loss_fn: Computes the scalar loss. It runs with every other optimizer's parameters
            frozen, so it may call any network.
        *detached: Tensors handed to ``loss_fn`` detached (a discriminator's fakes).
        gradient_clip_val: Clip this optimizer's gradients to this total norm before the step
            (``module.clip_gradients``, norm algorithm); None leaves them.

    Returns:
        The loss, detached (for logging).

    Raises:
        ValueError: The loss is not a scalar, or it does not reach one of the optimizer's
            parameters (``partial_backward``).
    """
    if gradient_clip_val is not None and gradient_clip_val <= 0:
        raise ValueError(f"gradient_clip_val must be positive or None, got {gradient_clip_val}")
    inputs = tuple(t.detach() for t in detached)
    with module.toggled_optimizer(optimizer):
        loss = loss_fn(*inputs)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        optimizer.zero_grad(set_to_none=True)
        partial_backward(module, loss, optimizer_parameters(optimizer))
        if gradient_clip_val is not None:
            module.clip_gradients(
                optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm="norm"
            )
        optimizer.step()
    return loss.detach()
