"""Stop training on a non-finite loss, before a bad checkpoint can be written.

Trainer(detect_anomaly=True) finds the op that produced a NaN but slows every step several times;
this callback only looks at the losses. It checks the loss returned by ``training_step`` and
every logged ``train/*loss*`` value, raises :class:`FloatingPointError` with the epoch, step, the
path of the last good checkpoint and the flags that start a new run from it, and so leaves
``last.ckpt`` as it was after the last finite epoch (ModelCheckpoint saves nothing when training
ends with an exception).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

__all__ = ["NaNGuard"]


def _loss_values(outputs: Any, metrics: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The loss tensors to check: ``outputs['loss']`` (or a bare tensor) and logged train losses."""
    values: dict[str, torch.Tensor] = {}
    if isinstance(outputs, torch.Tensor):
        values["loss"] = outputs
    elif isinstance(outputs, dict) and isinstance(outputs.get("loss"), torch.Tensor):
        values["loss"] = outputs["loss"]
    for key, value in metrics.items():
        if key.startswith("train/") and "loss" in key and isinstance(value, torch.Tensor):
            values[key] = value
    return values


class NaNGuard(Callback):
    """Raise :class:`FloatingPointError` as soon as a training loss is NaN or infinite.

    Args:
        check_every_n_steps: Check on every n-th training batch. Between checks the finiteness
            flag is accumulated on the device, so nothing is missed; a check costs one host sync.
            The flag is always checked before a checkpoint is saved and at the end of each epoch.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self._finite: torch.Tensor | None = None
        self._first_bad: str | None = None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        values = _loss_values(outputs, trainer.callback_metrics)
        for value in values.values():
            finite = torch.isfinite(value.detach()).all()
            self._finite = finite if self._finite is None else self._finite & finite
        if (batch_idx + 1) % self.check_every_n_steps == 0:
            self._check(trainer, values)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(trainer, {})

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check(trainer, {})

    def _check(self, trainer: Trainer, values: dict[str, torch.Tensor]) -> None:
        if self._finite is None or bool(self._finite):
            return
        bad = {k: float(v) for k, v in values.items() if not torch.isfinite(v.detach()).all()}
        what = ", ".join(f"{k}={v}" for k, v in bad.items()) or "a training loss was not finite"
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        raise FloatingPointError(f"Non-finite loss at {where} ({what}). {_advice(trainer)}")


def _advice(trainer: Trainer) -> str:
    """What to do next: a resume would repeat the same settings, so start from the weights."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    if not path:
        return (
            "Training stopped before any checkpoint was saved. Check the data, or run again with "
            "a lower learning rate (add --model.init_args.lr=<lower value> to the command)."
        )
    return (
        f"Training stopped; the last good checkpoint is kept: {path}. Check the data, or go on "
        "from those weights with a lower learning rate as a new run, by adding to the command: "
        f"--run.init_from={path} --model.init_args.lr=<lower value> "
        "(RESUME=1 would repeat the same settings, and refuses a changed learning rate)."
    )
