"""Mixed precision for every method, built from its experiment YAML (``benchmarks.gpu.METHODS``).

- ``bf16-mixed``: each method's training step runs under autocast (CPU autocast here, as on CUDA):
  its convolutions and matmuls compute in bfloat16, the loss stays finite, the weights move.
- ``16-mixed`` with a gradient scaler, for methods with manual optimization (they call the
  optimizer themselves, more than once per batch for MinMaxCAM): the scaled gradients are
  unscaled before every step, so one batch moves the weights as fp32 does. The scaler is handed to
  the Trainer as its ``16-mixed`` plugin (a CPU Trainer would turn ``precision="16-mixed"`` into
  bf16); the ``gpu`` test runs the same check on CUDA.
"""

from __future__ import annotations

import pytest
import torch
from lightning import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from benchmarks.gpu import METHODS, Method, build, write_twin

MATMULS = (nn.Conv2d, nn.Linear, nn.LSTM, nn.Conv1d)


class AutocastProbe(Callback):
    """Records the dtypes the model's convolutions and matmuls produce during training steps."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self._handles: list = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for module in pl_module.modules():
            if isinstance(module, MATMULS):
                self._handles.append(module.register_forward_hook(self._record))

    def _record(self, module: nn.Module, inputs, output) -> None:
        first = output[0] if isinstance(output, tuple) else output
        if isinstance(first, PackedSequence):
            first = first.data
        if module.training:
            self.dtypes.add(first.dtype)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for handle in self._handles:
            handle.remove()


def _trainer(batches: int, callbacks=(), **precision) -> Trainer:
    return Trainer(
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        devices=1,
        callbacks=list(callbacks),
        **precision,
    )


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().float().cpu().clone()
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }


def _overrides(method: Method, folder) -> list[str]:
    """The CPU-scale overrides of ``method`` on a tiny twin written under ``folder``."""
    return write_twin(method.twin, folder / method.name, tiny=True) + method.cpu


def _built(method: Method, overrides: list[str]):
    seed_everything(0)
    return build(method, overrides)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_training_step_runs_under_bf16_autocast(method, tmp_path):
    model, data = _built(method, _overrides(method, tmp_path))
    before = _weights(model)
    probe = AutocastProbe()
    trainer = _trainer(2, [probe], accelerator="cpu", precision="bf16-mixed")
    trainer.fit(model, datamodule=data)
    assert torch.bfloat16 in probe.dtypes, f"no bf16 matmul in {method.name}'s training step"
    losses = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    after = _weights(model)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before), "no weight moved"


def _one_batch_update(method: Method, overrides, **precision) -> tuple[Trainer, torch.Tensor]:
    """The flattened weight change of one training batch from the same weights and batch."""
    if method.no_fp16_update_check:
        pytest.skip(f"{method.name}: {method.no_fp16_update_check}")
    model, data = _built(method, overrides)
    if model.automatic_optimization:
        pytest.skip(f"{method.name}: automatic optimization (Lightning's own scaler path)")
    before = _weights(model)
    seed_everything(1)  # the same augmentation draws in both runs
    trainer = _trainer(1, **precision)
    trainer.fit(model, datamodule=data)
    after = _weights(model)
    return trainer, torch.cat([(after[k] - before[k]).flatten() for k in before])


#: Loss scale of the checks: GradScaler's default (2**16) overflows and skips the first steps by
#: design while it searches for its scale; from 2**10 one batch steps every time, so its update
#: can be compared with fp32's.
INIT_SCALE = 2.0**10


def _check_scaled_update_matches_fp32(method: Method, folder, device: str) -> None:
    overrides = _overrides(method, folder)
    _, reference = _one_batch_update(method, overrides, accelerator=device)
    scaler = torch.amp.GradScaler(device, init_scale=INIT_SCALE)
    plugin = MixedPrecision("16-mixed", device=device, scaler=scaler)
    trainer, scaled = _one_batch_update(method, overrides, accelerator=device, plugins=[plugin])
    assert trainer.precision == "16-mixed"
    assert scaler.get_scale() == INIT_SCALE, "the scaler skipped a step (inf/NaN gradients)"
    assert reference.norm() > 0
    # fp16 autocast rounds activations and gradients (about 3 decimal digits); a step on still
    # scaled gradients, or a step the scaler skipped, is off by orders of magnitude
    relative = float((scaled - reference).norm() / reference.norm())
    assert relative < 0.05, f"16-mixed update differs from fp32 by {relative:.3f} (relative)"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_manual_optimization_unscales_fp16_gradients_on_cpu(method, tmp_path):
    _check_scaled_update_matches_fp32(method, tmp_path, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_manual_optimization_runs_16_mixed_with_its_scaler_on_cuda(method, tmp_path):
    _check_scaled_update_matches_fp32(method, tmp_path, "cuda")
