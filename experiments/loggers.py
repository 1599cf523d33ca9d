"""A CSV logger that a resumed run appends to.

Lightning's CSVLogger deletes ``metrics.csv`` when its folder already holds files, so resuming a run
in its own folder would lose the epochs before the interruption. :class:`ResumableCSVLogger` keeps
the file, takes its header over, and appends; the CLI first drops the rows logged after the
checkpoint it resumes from (:func:`trim_metrics`), so each epoch appears once.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

__all__ = ["ResumableCSVLogger", "trim_metrics"]


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir=log_dir)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(next(csv.reader(file), []))

    def _check_log_dir_exists(self) -> None:
        """Keep an existing metrics.csv (the parent deletes it)."""


class ResumableCSVLogger(CSVLogger):
    """:class:`~lightning.pytorch.loggers.CSVLogger` that appends to an existing ``metrics.csv``.

    Takes the same arguments as CSVLogger; logs go to ``<save_dir>/<name>/<version>/metrics.csv``.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


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
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
    return len(rows) - len(kept)
