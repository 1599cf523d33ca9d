"""Face hallucination fitted under DDP: what every rank holds after the run.

``python tests/ddp_exemplar_sr_module.py OUT DEVICES`` (repository root, ``MASTER_PORT`` set):
fits ``ExemplarSRModule`` at test scale (tiny widths, a random LPIPS trunk, x8 from 8 px to
64 px, m = 2) with the WGAN-GP critic and its drift term, for one epoch on 16 made-up rows,
batches of 4 per process (the critic's minibatch-stddev group), with ``strategy="ddp"`` (gloo):
each iteration updates G_S, the critic, then ISR + E_Ex + the WNNs. Writes ``OUT/rank<r>.pt``:
this rank's trained weights (generator and critic), its learning rates, its step values of every
training term and the epoch values it logged. Run by tests/methods/test_exemplar_sr_module.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from exemplar_sr_tiny import MODULE as TINY
from lightning import Callback, LightningDataModule, Trainer, seed_everything
from torch.utils.data import DataLoader

from lightning_modules.exemplar_sr import ExemplarSRModule
from lightning_modules.exemplar_sr.module import TRAIN_LOGS

ROWS, BATCH, M = 16, 4, 2
SCALE, HIGH = 8, 64
TRAINED = ("generator.", "critic.")
#: the run's settings: the critic on (with drift, so every term is logged), rates all different
SETTINGS = {
    "image_size": HIGH,
    "lambda_adv": 1e-3,
    "drift": 1e-3,
    "lr": 1e-3,
    "wnn_lr": 2e-4,
    "critic_lr": 5e-4,
}


def rows() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    low = HIGH // SCALE
    return [
        {
            "image_lr": torch.rand(3, low, low, generator=g) * 2 - 1,
            "image_hr": torch.rand(3, HIGH, HIGH, generator=g) * 2 - 1,
            "exemplars": torch.rand(M, 3, HIGH, HIGH, generator=g) * 2 - 1,
        }
        for _ in range(ROWS)
    ]


class Rows(LightningDataModule):
    hr_size, low_size, normalize = HIGH, HIGH // SCALE, "signed"  # what the module checks

    def train_dataloader(self) -> DataLoader:
        return DataLoader(rows(), batch_size=BATCH, shuffle=True)


class Steps(Callback):
    """This rank's step value of every training term."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {name: [] for name in TRAIN_LOGS}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        for name, values in self.values.items():
            values.append(float(trainer.callback_metrics[f"train/{name}_step"]))


def main(out: str, devices: int) -> None:
    seed_everything(0)
    module = ExemplarSRModule(**(TINY | SETTINGS))
    steps = Steps()
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[steps],
    )  # fmt: skip
    trainer.fit(module, Rows())
    logged = trainer.callback_metrics
    result = {
        "state": {k: v for k, v in module.state_dict().items() if k.startswith(TRAINED)},
        "lr": [[group["lr"] for group in opt.param_groups] for opt in trainer.optimizers],
        "steps": steps.values,
        "epoch": {name: float(logged[f"train/{name}_epoch"]) for name in TRAIN_LOGS},
    }
    torch.save(result, Path(out, f"rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
