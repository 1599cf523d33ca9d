"""Validate and predict a fixed OLRSiamese under 2-process DDP (gloo, CPU).

``python tests/ddp_olr_siamese.py ROOT TRAIN_COUNT WEIGHTS OUT`` (from the repository root,
``MASTER_PORT`` set): loads the state dict ``WEIGHTS`` into ``OLRSiamese(**MODEL)``, runs
``validate`` on the held-out pairs (rank zero writes ``OUT/metrics.json``) and ``predict`` with
``WriteEmbeddings`` into ``OUT``. ``tests/methods/test_olr_siamese.py`` runs it and compares
with one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning import Trainer

from datamodules.olr import OLRDataModule
from lightning_modules.olr.embedding_writer import WriteEmbeddings
from lightning_modules.olr.siamese import OLRSiamese

DATA = {"image_size": 46, "batch_size": 7, "num_workers": 0, "pairs": True}
NET = {"channels": [8, 16, 32, 64], "stem_width": 8}
MODEL = {
    "embedding_dim": 8,
    "widths": [8, 16, 32],
    "teacher_model_name": "resnet10t",
    "teacher_model_kwargs": NET,
    "allow_untrained_teacher": True,
}


def main(root: str, train_count: str, weights: str, out: str) -> None:
    data = OLRDataModule(root=root, train_count=int(train_count), **DATA)
    model = OLRSiamese(**MODEL)
    model.load_state_dict(torch.load(weights, weights_only=True))
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[WriteEmbeddings(output_dir=out)],
    )  # fmt: skip
    metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    if trainer.is_global_zero:
        Path(out, "metrics.json").write_text(json.dumps(metrics))
    trainer.predict(model, datamodule=data, return_predictions=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
