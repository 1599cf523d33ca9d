"""ISTRC's BEGAN fitted under DDP: what every rank holds after each step.

``python tests/ddp_istrc_began.py OUT DEVICES`` (repository root, ``MASTER_PORT`` set): fits
``BEGAN`` at test scale for 2 epochs on 16 random [-1, 1] images, batches of 4 per process, with
``strategy="ddp"`` (gloo), and writes ``OUT/rank<r>.json``: per step this rank's logged L(x),
L(G(z_G)), M_global and k_t (after the step) and the first codes of its noise; at the end its
weights, buffers, learning rates and the epoch M_global. Run by tests/methods/test_istrc_began.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning import Callback, LightningDataModule, Trainer, seed_everything
from torch.utils.data import DataLoader

from lightning_modules.istrc.began import BEGAN

IMAGES = 16


def images() -> torch.Tensor:
    return torch.rand(IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


class Images(LightningDataModule):
    image_mean = image_std = (0.5, 0.5, 0.5)

    def train_dataloader(self) -> DataLoader:
        return DataLoader([{"image": x} for x in images()], batch_size=4, shuffle=True)


class Steps(Callback):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        z_d, _ = module._training_noise(batch["image"].shape[0])  # what this step will draw
        self.rows.append({"z": z_d[0, :4].tolist()})

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        logged = trainer.callback_metrics
        for name in ("loss_real", "loss_g", "m_global", "k"):
            self.rows[-1][name] = float(logged[f"train/{name}_step"])
        self.rows[-1]["k_buffer"] = float(module.equilibrium.k)


def main(out: str, devices: int) -> None:
    seed_everything(0)
    module = BEGAN(image_size=32, filters=8, code_size=16, lambda_k=1.0, k_init=0.5, lr=1e-3)
    steps = Steps()
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[steps],
    )  # fmt: skip
    trainer.fit(module, Images())
    result = {
        "steps": steps.rows,
        "state": {k: v.tolist() for k, v in module.state_dict().items()},
        "lr": [group["lr"] for opt in trainer.optimizers for group in opt.param_groups],
        "m_global_epoch": float(trainer.callback_metrics["train/m_global_epoch"]),
    }
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
