"""A logger for tests that records the images callbacks send it, and a fit that uses it."""

import warnings

from lightning import Trainer
from lightning.pytorch.loggers import Logger


class RecordingLogger(Logger):
    """A logger with ``log_image`` that only records its calls."""

    def __init__(self, save_dir: str) -> None:
        super().__init__()
        self._save_dir = save_dir
        self.image_calls: list[dict] = []

    name = "recording"
    version = 0

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.image_calls.append({"key": key, "images": images, "step": step, **kwargs})


def fit_recorded(tmp_path, module, callback, epochs: int = 2, **fit_kwargs) -> RecordingLogger:
    """Fit ``module`` on the CPU for ``epochs`` of one training batch with ``callback`` and a
    ``RecordingLogger`` writing to ``tmp_path`` (one sanity step, no checkpoints or bars)."""
    logger = RecordingLogger(str(tmp_path))
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=1,
        logger=logger,
        callbacks=[callback],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, **fit_kwargs)
    return logger
