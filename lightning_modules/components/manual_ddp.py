"""Manual optimization under DDP: what Lightning's DDP wrapper does not do for such modules.

- ``partial_backward``: a backward pass that reaches only part of a model. DDP's reducer expects
  a gradient for every parameter after each backward it is prepared for, so with plain
  ``strategy="ddp"`` a step that updates part of the model fails ("parameters that were not used
  in producing the loss"): MinMaxCAM's Stage II (``fc.weight`` only), a GAN's discriminator step.
  ``find_unused_parameters=True`` would search the whole graph on every backward instead.
  ``partial_backward`` blocks DDP's gradient hooks for this one backward and averages the
  gradients of the parameters it names across processes itself, as DDP would have.
- ``broadcast_buffers``: rank zero's buffers (BatchNorm statistics) to every process. DDP
  broadcasts them before each forward, but Lightning turns that off after every manual-
  optimization step, so each process would evaluate with the statistics of its own batches
  while the checkpoint holds rank zero's. A module calls it when an evaluation epoch starts;
  ``RankZeroBuffersAtEvaluation`` (a mixin) does so for the validation and test epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.distributed as dist
from lightning import LightningModule
from lightning.pytorch.strategies import ParallelStrategy
from torch import Tensor
from torch.nn import Parameter


def partial_backward(module: LightningModule, loss: Tensor, params: Sequence[Parameter]) -> None:
    """``module.manual_backward(loss)`` for a ``loss`` whose gradient reaches only ``params``.

    Under DDP the backward runs with DDP's synchronization blocked (the strategy's public
    ``block_backward_sync``), then the gradients of ``params`` are averaged over the processes
    in one all-reduce (``strategy.reduce``, a mean). On one device it is ``manual_backward``.
    Loss scaling (``16-mixed``) is kept: the averaged gradients stay scaled for the optimizer
    step to unscale.

    Raises:
        ValueError: A parameter of ``params`` received no gradient (every process would then
            disagree on what to average).
    """
    strategy = module.trainer.strategy
    parallel = isinstance(strategy, ParallelStrategy) and strategy.world_size > 1
    with strategy.block_backward_sync() if parallel else nullcontext():
        module.manual_backward(loss)
    missing = [i for i, p in enumerate(params) if p.grad is None]
    if missing:
        raise ValueError(f"partial_backward: the loss does not reach params {missing}")
    if not parallel:
        return
    grads = [p.grad for p in params]
    mean = strategy.reduce(torch.cat([g.flatten() for g in grads]), reduce_op="mean")
    for grad, part in zip(grads, mean.split([g.numel() for g in grads]), strict=True):
        grad.copy_(part.view_as(grad))


def broadcast_buffers(module: LightningModule) -> None:
    """Copy rank zero's buffers to every process, in place (no-op without a process group).

    Every process must call it (``on_validation_epoch_start``, ``on_test_epoch_start``,
    ``on_predict_epoch_start``); then every process evaluates the module the checkpoint holds.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


class RankZeroBuffersAtEvaluation:
    """Mixin for a manually optimized ``LightningModule`` (before it in the bases): every
    validation and test epoch starts with ``broadcast_buffers(self)``."""

    def on_validation_epoch_start(self) -> None:
        broadcast_buffers(self)  # type: ignore[arg-type]

    def on_test_epoch_start(self) -> None:
        broadcast_buffers(self)  # type: ignore[arg-type]
