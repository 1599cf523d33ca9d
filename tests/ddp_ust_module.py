"""UST fitted under DDP: what every rank holds after the run.

``python tests/ddp_ust_module.py OUT DEVICES`` (repository root, ``MASTER_PORT`` set): fits
``USTModule`` at test scale (tiny widths, random LPIPS / VGG trunks, 64 x 48) for one epoch on
8 made-up unpaired rows, batches of 2 per process, with ``strategy="ddp"`` (gloo): each step
updates D_A + D_B, then the generator side, each through ``partial_backward``. Writes
``OUT/rank<r>.pt``: this rank's trained weights (generator and discriminators), its learning
rates and its step values of ``loss_d``. Run by tests/methods/test_ust_module.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning import Callback, LightningDataModule, Trainer, seed_everything
from torch.utils.data import DataLoader
from ust_tiny import MODULE as TINY

from lightning_modules.ust import USTModule
from lightning_modules.ust.masks import remove_item

ROWS, H, W = 8, 64, 48
TRAINED = ("generator.", "discriminator_a.", "discriminator_b.")


def rows() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    image_a = torch.rand(ROWS, 3, H, W, generator=g) * 2 - 1
    mask = torch.zeros(ROWS, 1, H, W)
    for i in range(ROWS):
        mask[i, :, 10 + i : 50, 8 : 40 - i] = 1
    context = remove_item(image_a, mask)
    image_b = torch.rand(ROWS, 3, H, W, generator=g) * 2 - 1
    return [
        {"image_a": image_a[i], "mask_a": mask[i], "context_a": context[i], "image_b": image_b[i]}
        for i in range(ROWS)
    ]


class Rows(LightningDataModule):
    image_mean = image_std = (0.5, 0.5, 0.5)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(rows(), batch_size=2, shuffle=True)


class Steps(Callback):
    def __init__(self) -> None:
        self.loss_d: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.loss_d.append(float(trainer.callback_metrics["train/loss_d_step"]))


def main(out: str, devices: int) -> None:
    seed_everything(0)
    module = USTModule(**TINY)
    steps = Steps()
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[steps],
    )  # fmt: skip
    trainer.fit(module, Rows())
    state = {k: v for k, v in module.state_dict().items() if k.startswith(TRAINED)}
    result = {
        "state": state,
        "lr": [group["lr"] for opt in trainer.optimizers for group in opt.param_groups],
        "loss_d": steps.loss_d,
    }
    torch.save(result, Path(out, f"rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
