"""A GAN step (D update, then G update through the frozen D) with ``network_update`` under DDP.

``python tests/ddp_adversarial_update.py OUT DEVICES`` (repository root, ``MASTER_PORT`` set):
fits one epoch of two batches of 8 rows (``DEVICES`` processes split each batch; the generator's
noise is part of the data so the split is exact) with ``strategy="ddp"``, and writes every rank's
final weights to ``OUT/rank<r>.json``. Run by test_adversarial_update.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning import LightningModule, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.components.adversarial_update import network_update


class GAN(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))

    def training_step(self, batch, batch_idx) -> None:
        real, z = batch
        opt_g, opt_d = self.optimizers()
        fake = self.generator(z)
        d = self.discriminator

        def d_loss(f):
            return d(f).pow(2).mean() + (d(real) - 1).pow(2).mean()

        network_update(self, opt_d, d_loss, fake)
        network_update(self, opt_g, lambda: (d(fake) - 1).pow(2).mean())

    def configure_optimizers(self):  # order: G, D
        return (
            torch.optim.SGD(self.generator.parameters(), lr=0.1),
            torch.optim.SGD(self.discriminator.parameters(), lr=0.1),
        )


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(16, 2, generator=g), torch.randn(16, 3, generator=g))


def main(out: str, devices: int) -> None:
    seed_everything(0)
    module = GAN()
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False,
    )  # fmt: skip
    rank, world = trainer.global_rank, trainer.world_size
    rows = [i for i in range(16) if (i % 8) // (8 // devices) == rank]  # rank r: its half of each 8
    loader = DataLoader(torch.utils.data.Subset(data(), rows), batch_size=8 // devices)
    assert world == devices
    trainer.fit(module, loader)
    weights = {k: v.tolist() for k, v in module.state_dict().items()}
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(weights))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
