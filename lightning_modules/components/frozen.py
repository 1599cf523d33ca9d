"""Frozen submodules of a LightningModule: no gradients, and eval mode whatever Lightning asks.

A frozen part (a pretrained encoder under a probe, a teacher) keeps its weights, and its
BatchNorm running statistics and dropout in inference behaviour, for the whole fit. ``freeze``
turns gradients off and switches the module to eval mode; ``FrozenSubmodules`` (a mixin before
``LightningModule``) keeps the submodules it names in eval mode each time Lightning (or anyone)
calls ``train()`` on the LightningModule or on a wrapper around it (DDP).
"""

from __future__ import annotations

from typing import ClassVar, Self

from torch import nn

__all__ = ["FrozenSubmodules", "freeze"]


def freeze(module: nn.Module) -> nn.Module:
    """``module`` with ``requires_grad=False`` on every parameter and in eval mode (in place)."""
    module.requires_grad_(False)
    return module.eval()


class FrozenSubmodules:
    """Mixin for a ``LightningModule``: ``train()`` leaves the submodules in ``frozen`` in eval.

    Example::

        class Probe(FrozenSubmodules, LightningModule):
            frozen = ("encoder",)
    """

    #: Dotted names of the submodules kept in eval mode.
    frozen: ClassVar[tuple[str, ...]] = ()

    def train(self, mode: bool = True) -> Self:
        super().train(mode)  # type: ignore[misc]
        for name in self.frozen:
            self.get_submodule(name).eval()  # type: ignore[attr-defined]
        return self
