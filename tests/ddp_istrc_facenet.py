"""ISTRC's FaceNet stand-in under DDP: verification from every rank's share, mining per rank.

``python tests/ddp_istrc_facenet.py OUT DEVICES CELEBA_ROOT`` (repository root, ``MASTER_PORT``
set): on the synthetic twin at ``CELEBA_ROOT`` at the test scale, validates the seeded untrained
``FaceNetTriplet`` (the whole val split, sharded across the processes), then fits one epoch of
2 batches of 4 identities x 4 images per process (``strategy="ddp"``, gloo) and validates again.
Writes ``OUT/rank<r>.json``: the two validations' metrics, this rank's step losses and training
identities, the epoch loss and the final weights. Run by tests/methods/test_istrc_face_encoder.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lightning import Callback, Trainer, seed_everything

from datamodules.celeba import CelebADataModule
from lightning_modules.istrc.facenet_module import FaceNetTriplet

TINY = {
    "backbone": "latentlab/vgg",
    "dim": 32,
    "input_size": 32,
    "model_kwargs": {"widths": [8, 16]},
}


class Steps(Callback):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        loss = float(trainer.callback_metrics["train/loss_step"])
        self.rows.append({"loss": loss, "identity": batch["identity"].tolist()})


def main(out: str, devices: int, root: str) -> None:
    seed_everything(0)
    module = FaceNetTriplet(**TINY, pairs_same=100, pairs_different=100)
    data = CelebADataModule(
        root=root, image_size=32, split="official", crop="face128", normalize="signed",
        batch_size=16, identities_per_batch=4, images_per_identity=4, num_workers=0,
    )  # fmt: skip
    steps = Steps()
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[steps],
    )  # fmt: skip
    untrained = trainer.validate(module, data, verbose=False)[0]
    trainer.fit(module, data)
    trained = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    result = {
        "untrained": untrained,
        "trained": trained,
        "steps": steps.rows,
        "loss_epoch": float(trainer.callback_metrics["train/loss_epoch"]),
        "state": {k: v.tolist() for k, v in module.state_dict().items()},
    }
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
