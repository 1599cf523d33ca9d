"""The loggers of a run folder: a CSV logger that a resumed run appends to, and the pointing of
every configured logger at the folder.

Lightning's CSVLogger deletes ``metrics.csv`` when its folder already holds files, so resuming a run
in its own folder would lose the epochs before the interruption. :class:`ResumableCSVLogger` is a
logger of ours (Lightning's public ``Logger`` base) that writes the same file (one row per
``log_metrics`` call, a ``step`` column, columns sorted by name) and appends to an existing one;
the CLI first drops the rows logged after the checkpoint it resumes from (:func:`trim_metrics`),
so each epoch appears once.
"""

from __future__ import annotations

import csv
import importlib
import os
from argparse import Namespace as ArgparseNamespace
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from experiments.wandb_setup import configure_wandb

__all__ = ["ResumableCSVLogger", "configure_loggers", "import_class", "trim_metrics"]

METRICS_FILE = "metrics.csv"
HPARAMS_FILE = "hparams.yaml"


class ResumableCSVLogger(Logger):
    """Metrics to ``<save_dir>/metrics.csv`` (appended to when it exists), hparams to
    ``<save_dir>/hparams.yaml``.

    Args:
        save_dir: The folder of both files (the CLI sets the run folder).
        flush_logs_every_n_steps: Write the buffered rows every this many steps (and at the end).
    """

    def __init__(self, save_dir: str, flush_logs_every_n_steps: int = 100) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self.flush_logs_every_n_steps = flush_logs_every_n_steps
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] | None = None  # read from an existing file at the first write
        self._hparams: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        return self._save_dir

    @property
    def metrics_file(self) -> Path:
        return Path(self._save_dir) / METRICS_FILE

    @rank_zero_only
    def log_hyperparams(
        self, params: Mapping[str, Any] | ArgparseNamespace | None, *args: Any, **kwargs: Any
    ) -> None:
        params = vars(params) if isinstance(params, ArgparseNamespace) else dict(params or {})
        self._hparams.update(params)
        os.makedirs(self._save_dir, exist_ok=True)
        save_hparams_to_yaml(Path(self._save_dir) / HPARAMS_FILE, self._hparams)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        row = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        row["step"] = len(self._rows) if step is None else step
        self._rows.append(row)
        if (row["step"] + 1) % self.flush_logs_every_n_steps == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        super().save()
        if not self._rows:
            return
        path = self.metrics_file
        exists = path.is_file()
        if self._columns is None:
            self._columns = _header(path) if exists else []
        new = set().union(*self._rows) - set(self._columns)
        if new:
            self._columns = sorted({*self._columns, *new})
            if exists:  # a new column: rewrite the file under the new header
                with path.open(newline="") as file:
                    old = list(csv.DictReader(file))
                _write(path, "w", self._columns, old, header=True)
        os.makedirs(self._save_dir, exist_ok=True)
        _write(path, "a", self._columns, self._rows, header=not exists)
        self._rows = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def _header(path: Path) -> list[str]:
    with path.open(newline="") as file:
        return list(next(csv.reader(file), []))


def _write(path: Path, mode: str, columns: list[str], rows: list[dict], header: bool) -> None:
    with path.open(mode, newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        if header:
            writer.writeheader()
        writer.writerows(rows)


def trim_metrics(path: Path, last_epoch: int) -> int:
    """Drop the rows of ``path`` logged after epoch ``last_epoch``; return how many were dropped.

    Rows without an epoch (none are written by ``self.log``) are kept.
    """
    if not path.is_file():
        return 0
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [r for r in rows if not r.get("epoch") or int(float(r["epoch"])) <= last_epoch]
    if len(kept) < len(rows):
        _write(path, "w", list(fields), kept, header=True)
    return len(rows) - len(kept)


def import_class(class_path: str) -> type:
    """The class that a config's ``class_path`` (``package.module.Class``) names."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def configure_loggers(
    loggers: Any, run_dir: Path, name: str, environ: MutableMapping[str, str]
) -> str | None:
    """Point the logger configs of ``trainer.logger`` at ``run_dir``, deciding by class.

    ResumableCSVLogger: ``<run>/metrics.csv``; Lightning's CSVLogger: the same place; a
    TensorBoardLogger: ``<run>/tensorboard``; a WandbLogger: :func:`configure_wandb`. Any other
    logger keeps its own settings (a warning says so). Returns the W&B run id, if any.
    """
    wandb_id = None
    if loggers is None or isinstance(loggers, bool):
        return None
    for logger in loggers if isinstance(loggers, list | tuple) else [loggers]:
        if not isinstance(logger, Namespace) or "class_path" not in logger:
            continue
        cls, args = import_class(logger.class_path), logger.init_args
        if issubclass(cls, ResumableCSVLogger):
            args.save_dir = str(run_dir)
        elif issubclass(cls, CSVLogger | TensorBoardLogger):
            args.save_dir = str(run_dir)
            args.name = "tensorboard" if issubclass(cls, TensorBoardLogger) else ""
            args.version = ""
        elif issubclass(cls, WandbLogger):
            wandb_id = configure_wandb(logger, name, run_dir, environ)
        else:
            rank_zero_warn(f"{logger.class_path} is not pointed at the run folder {run_dir}")
    return wandb_id
