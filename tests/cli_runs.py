"""Running the real CLI in-process on the face-attribute experiment (synthetic tiny twin), cut to a
few batches per epoch, for the runner's tests (fixtures: ``experiment_args`` in conftest.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

from lightning import Callback
from omegaconf import OmegaConf

from experiments.cli import LatentLabCLI

REPO = Path(__file__).resolve().parents[1]
NAME = "face_attributes/synthetic_tiny"
EXPERIMENT = REPO / "experiments" / f"{NAME}.yaml"
FAST = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.deterministic=true",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.limit_predict_batches=1",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.max_epochs=2",
    "--seed_everything=7",
]


def data_flags(data_root: Path) -> list[str]:
    """Point the data modules (CelebA source, FFHQ target) at the twin, with small batches."""
    init_args = OmegaConf.load(EXPERIMENT).data.get("init_args", {})
    if "source" in init_args:  # LabelTransferDataModule: CelebA -> FFHQ
        parts = {"source.init_args.": "celeba", "target.init_args.": "ffhq"}
    else:
        parts = {"": "celeba"}
    flags = []
    for part, dataset in parts.items():
        key = f"--data.init_args.{part}"
        flags += [f"{key}root={data_root / dataset}", f"{key}batch_size=8", f"{key}num_workers=0"]
    return flags


def experiment_args(data_root: Path, run_root: Path) -> list[str]:
    """Config + overrides for one fast run of ``NAME`` into ``run_root``."""
    return [
        "--config",
        str(REPO / "experiments" / "_base.yaml"),
        "--config",
        str(EXPERIMENT),
        *data_flags(data_root),
        f"--run.root={run_root}",
        *FAST,
    ]


def run_cli(args: list[str], run: bool = True) -> LatentLabCLI:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return LatentLabCLI(args=args, run=run, environ={"WANDB_MODE": "disabled"})


class KillAt(Callback):
    """Simulate a crash in the first batch of ``epoch`` (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated kill")
