"""A run's last.ckpt holds the weights training ended with: also when --trainer.max_steps stops it
inside an epoch that runs no validation, and without a second save when an epoch-end save
already holds them."""

from __future__ import annotations

import pytest
import torch
from cli_runs import run_cli
from lightning import Callback

from callbacks.last_checkpoint import LastCheckpoint

pytestmark = pytest.mark.usefixtures("restore_global_state")


class CountSaves(Callback):
    """Counts the checkpoints the trainer writes (every save calls every callback's hook)."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.steps.append(trainer.global_step)


def _fit(experiment_args, *flags: str):
    cli = run_cli([*experiment_args, "--trainer.callbacks=[]", *flags], run=False)
    saves = CountSaves()
    cli.trainer.callbacks.append(saves)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    last = torch.load(cli.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return cli, last, saves.steps


@pytest.mark.parametrize("monitor", ["val/loss", None], ids=["monitored", "unmonitored"])
def test_max_steps_inside_an_unvalidated_epoch_saves_the_final_weights(experiment_args, monitor):
    """2 batches an epoch, validation every 2nd epoch, 3 steps: epoch 0 saves nothing, epoch 1
    stops after its first batch, so only the end of training saves step 3."""
    flags = ["--trainer.check_val_every_n_epoch=2", "--trainer.max_steps=3"]
    flags += [f"--checkpoint.monitor={monitor}" if monitor else "--checkpoint.monitor=null"]
    cli, last, steps = _fit(experiment_args, *flags)
    assert cli.trainer.global_step == 3
    assert last["global_step"] == 3
    assert steps == [3]
    final = cli.model.state_dict()
    for key, value in last["state_dict"].items():
        torch.testing.assert_close(value, final[key], rtol=0, atol=0, msg=key)
    writer = [c for c in cli.trainer.callbacks if isinstance(c, LastCheckpoint)]
    assert len(writer) == 1 and writer[0].last_model_path.endswith("last.ckpt")


def test_an_epoch_end_save_of_the_final_step_is_not_repeated(experiment_args):
    """One validated epoch of 2 steps: the best checkpoint and last.ckpt, each written once."""
    cli, last, steps = _fit(experiment_args, "--trainer.max_epochs=1")
    assert last["global_step"] == 2
    assert steps == [2, 2]
    names = sorted(p.name for p in (cli.run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in names and len(names) == 2
