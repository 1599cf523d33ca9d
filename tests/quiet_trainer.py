"""A quiet CPU ``Trainer`` for method tests: one epoch, no logger, checkpoints, progress bar,
model summary or sanity validation, unless the test asks for them."""

from __future__ import annotations

from pathlib import Path

from lightning import Trainer

QUIET = {
    "accelerator": "cpu",
    "max_epochs": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def cpu_trainer(root_dir: str | Path | None = None, **kwargs) -> Trainer:
    """``Trainer(**QUIET)`` writing under ``root_dir``; ``kwargs`` override the defaults."""
    return Trainer(**(QUIET | {"default_root_dir": root_dir} | kwargs))
