"""The evaluation-callback base: stage routing, one epoch rule, one device rule, key checks.

A metric callback subclasses :class:`EvaluationCallback`, names the output keys it consumes
(``callbacks.keys``) and implements three methods:

- ``make_metrics(stage)``: a fresh ``torch.nn.Module`` (usually a ``torchmetrics`` ``Metric`` or a
  ``ModuleDict`` of them) that holds one stage's state; the base moves it to the module's device;
- ``update(metrics, outputs, batch, pl_module)``: feed one step's output dict to it;
- ``report(stage, metrics, trainer, pl_module)``: compute, log (``pl_module.log``, keys
  ``{stage}/{name}``) and draw at the end of the epoch.

The base does the rest, once for every callback:

- stages: ``val`` and ``test`` by default; ``stages`` narrows them; the sanity check is skipped;
- epoch rule: validation is evaluated after epochs ``n - 1, 2n - 1, ...`` (``(epoch + 1) % n ==
  0``) for ``every_n_epochs = n`` and always after the last epoch; test always;
- device rule: the stage's metrics live on ``pl_module.device``; state is synced across processes
  by the metrics themselves (``dist_reduce_fx``), so every rank calls ``report`` and values are
  global; ``report`` logs them with ``callbacks.global_log.log_global`` (exact, the same on every
  rank), gathers per-item data with ``callbacks.gather`` (uneven shares), and leaves drawing and
  file writing to rank zero (``trainer.is_global_zero``), never a collective inside that branch;
- keys: at setup, when the module lists ``evaluation_outputs``, every key of ``required_keys``
  must be among them, else a ``ValueError`` names the missing keys; at every step the output dict
  must hold them, else the same error. Nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from callbacks import keys as output_keys
from callbacks.gather import gather_items

STAGES: tuple[str, ...] = ("val", "test")


def declared_outputs(pl_module: LightningModule) -> frozenset[str] | None:
    """The keys a module lists in ``evaluation_outputs``, or None when it lists none."""
    declared = getattr(pl_module, "evaluation_outputs", None)
    return None if declared is None else frozenset(declared)


def missing_keys_error(callback: str, stage: str, missing: Iterable[str], got: Any) -> ValueError:
    """The one error for outputs that lack keys a callback needs."""
    found = sorted(got) if isinstance(got, Mapping) else type(got).__name__
    return ValueError(
        f"{callback} needs the {stage} step outputs {sorted(missing)} (callbacks/keys.py), "
        f"but the module returns {found}"
    )


class EvaluationCallback(Callback):
    """Accumulates val/test step outputs in per-stage metric holders and reports at epoch end.

    Args:
        stages: Stages to evaluate, any of ``"val"`` and ``"test"`` (default both).
        every_n_epochs: Evaluate validation after every n-th epoch (and after the last one).
    """

    #: Output keys every step must return for this callback (``callbacks.keys``).
    required_keys: tuple[str, ...] = ()

    def __init__(self, stages: list[str] | None = None, every_n_epochs: int = 1) -> None:
        super().__init__()
        stages = list(STAGES) if stages is None else list(stages)
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise ValueError(f"{type(self).__name__}: stages are 'val' or 'test', got {unknown}")
        if every_n_epochs < 1:
            raise ValueError(f"{type(self).__name__}: every_n_epochs must be >= 1")
        unknown_keys = sorted(set(self.required_keys) - output_keys.ALL)
        if unknown_keys:
            raise ValueError(f"{type(self).__name__}: unknown output keys {unknown_keys}")
        self.stages = stages
        self.every_n_epochs = every_n_epochs
        self.metrics: dict[str, nn.Module] = {}

    # ------------------------------------------------------------------ what subclasses write
    def make_metrics(self, stage: str) -> nn.Module:
        """A fresh holder of one stage's state."""
        raise NotImplementedError

    def update(
        self, metrics: nn.Module, outputs: Mapping[str, Any], batch: Any, pl_module: LightningModule
    ) -> None:
        """Feed one step's outputs to ``metrics``."""
        raise NotImplementedError

    def report(
        self, stage: str, metrics: nn.Module, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        """Compute, log and draw the stage's results; called on every rank."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the rules
    def is_active(self, trainer: Trainer, stage: str) -> bool:
        """Whether ``stage`` is evaluated now (sanity check off, stage chosen, epoch rule)."""
        if stage not in self.stages or trainer.sanity_checking:
            return False
        if stage == "test" or trainer.state.fn != "fit":
            return True  # test, and validate() outside fit: always
        return is_evaluation_epoch(trainer, self.every_n_epochs)

    def check_keys(self, stage: str, outputs: Any) -> None:
        has = outputs if isinstance(outputs, Mapping) else {}
        missing = [k for k in self.required_keys if k not in has]
        if missing:
            raise missing_keys_error(type(self).__name__, stage, missing, outputs)

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        declared = declared_outputs(pl_module)
        if declared is None:
            return
        missing = [k for k in self.required_keys if k not in declared]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the step outputs {sorted(missing)} "
                f"(callbacks/keys.py), but {type(pl_module).__name__}.evaluation_outputs lists "
                f"only {sorted(declared)}"
            )

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start("val", trainer, pl_module)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start("test", trainer, pl_module)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._update("val", outputs, batch, pl_module)

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._update("test", outputs, batch, pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish("val", trainer, pl_module)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish("test", trainer, pl_module)

    # ------------------------------------------------------------------ routing
    def _start(self, stage: str, trainer: Trainer, pl_module: LightningModule) -> None:
        self.metrics.pop(stage, None)
        if self.is_active(trainer, stage):
            self.metrics[stage] = self.make_metrics(stage).to(pl_module.device)

    def _update(self, stage: str, outputs: Any, batch: Any, pl_module: LightningModule) -> None:
        metrics = self.metrics.get(stage)
        if metrics is None:
            return
        self.check_keys(stage, outputs)
        self.update(metrics, outputs, batch, pl_module)

    def _finish(self, stage: str, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = self.metrics.pop(stage, None)
        if metrics is not None:
            self.report(stage, metrics, trainer, pl_module)


class FirstBatch(nn.Module):
    """A panel's holder for one stage: the first rows of the first batch, kept on the CPU.

    Panels draw from what the first step of an evaluation returned (the module already ran in
    eval mode, so nothing is computed twice); ``keep`` stores only the first call's values.
    """

    def __init__(self, num_images: int) -> None:
        super().__init__()
        self.num_images = num_images
        self.values: dict[str, Any] | None = None

    def keep(self, values: Mapping[str, Any]) -> None:
        """Store the first ``num_images`` rows of each value (tensors detached, on the CPU)."""
        if self.values is not None:
            return
        n = self.num_images
        self.values = {
            k: v[:n].detach().cpu() if isinstance(v, torch.Tensor) else list(v[:n])
            for k, v in values.items()
        }

    def gather(self, world_size: int) -> None:
        """Replace ``values`` by the first ``num_images`` rows of the stage over all ranks.

        Every rank sends its first ``ceil(num_images / world_size)`` rows; in dataset order
        (``callbacks.gather``), cut to the rows of the longest first batch kept, they are the
        rows one process keeps, so a panel does not depend on the world size. Call it on every
        rank (collectives) before drawing on rank zero.
        """
        if world_size <= 1:
            return
        share = -(-self.num_images // world_size)
        values = self.values or {}
        count = min((len(v) for v in values.values()), default=0)
        rows = [{k: v[i] for k, v in values.items()} for i in range(min(share, count))]
        longest = max(gather_items([count], order="rank"))  # one process keeps its first batch's
        rows = gather_items(rows)[:longest]
        if not rows:
            self.values = None
            return
        self.values = {
            k: torch.stack([r[k] for r in rows]) if isinstance(rows[0][k], torch.Tensor)
            else [r[k] for r in rows]
            for k in rows[0]
        }  # fmt: skip


def is_evaluation_epoch(trainer: Trainer, every_n_epochs: int) -> bool:
    """The suite's one epoch rule: after epochs n-1, 2n-1, ... and after the last epoch."""
    epoch = trainer.current_epoch
    last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
    return (epoch + 1) % every_n_epochs == 0 or last


def evaluated_epoch(trainer: Trainer) -> int:
    """The epoch whose weights an evaluation sees, counted as the logs and checkpoint names do.

    During fit, the current epoch. In a test, validation or prediction of a loaded checkpoint
    (``trainer.ckpt_path``), the epoch stored in it; else the last epoch fit completed (the
    weights in memory; 0 for weights that never trained). ``trainer.current_epoch`` after a fit
    counts the completed epochs: 1 after a one-epoch fit, whose weights are epoch 0's.
    """
    if trainer.state.fn == TrainerFn.FITTING:
        return trainer.current_epoch
    if trainer.ckpt_path:
        checkpoint = torch.load(trainer.ckpt_path, map_location="cpu", mmap=True, weights_only=True)
        return int(checkpoint["epoch"])
    return max(trainer.current_epoch - 1, 0)
