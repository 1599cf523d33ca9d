"""Two optimizer steps per batch, the second on the head's weight only (``partial_backward``).

``python tests/ddp_partial_backward.py OUT DEVICES [plain]`` (repository root, ``MASTER_PORT``
set): fits one batch of 8 rows (``DEVICES`` processes split it) with ``strategy="ddp"`` and writes
every rank's final weights and buffer (after a validation epoch) to ``OUT/rank<r>.json``.
``plain`` takes the second step with ``manual_backward`` instead. Run by test_partial_backward.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning import LightningModule, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.components.manual_ddp import broadcast_buffers, partial_backward


class TwoStages(LightningModule):
    def __init__(self, plain: bool) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.body, self.head, self.plain = nn.Linear(4, 3), nn.Linear(3, 1), plain
        # a buffer each rank changes on its own, as BatchNorm statistics
        self.register_buffer("seen", torch.zeros(()))

    def training_step(self, batch, batch_idx) -> None:
        x, y = batch
        self.seen += x.sum()
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(F.mse_loss(self.head(self.body(x)).squeeze(1), y))
        opt.step()
        opt.zero_grad(set_to_none=True)
        features = self.body(x).detach()
        loss = (features @ self.head.weight.T).pow(2).mean()  # reaches head.weight only
        if self.plain:
            self.manual_backward(loss)
        else:
            partial_backward(self, loss, [self.head.weight])
        opt.step()

    def on_validation_epoch_start(self) -> None:
        broadcast_buffers(self)

    def validation_step(self, batch, batch_idx) -> None:
        self.head(self.body(batch[0]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(8, 4, generator=g), torch.randn(8, generator=g))


def main(out: str, devices: int, plain: bool) -> None:
    seed_everything(0)
    module = TwoStages(plain)
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    loader = DataLoader(data(), batch_size=8 // devices)
    trainer.fit(module, loader, loader)
    weights = {k: v.tolist() for k, v in module.state_dict().items()}
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(weights))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), plain=sys.argv[3:] == ["plain"])
