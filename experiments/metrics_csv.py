"""Reading a run's ``metrics.csv`` (``experiments.loggers``): one column per logged key, one row
per logging step; a key's epoch values are the rows where its column is filled."""

from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["epoch_series", "last_value"]


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the stage run logged no metrics")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def epoch_series(path: Path, key: str) -> tuple[list[int], list[float]]:
    """``(epochs, values)`` of ``key`` in ``path`` (a metrics.csv): the rows that hold it."""
    epochs, values = [], []
    for row in _rows(path):
        if row.get(key):
            epochs.append(int(float(row["epoch"])))
            values.append(float(row[key]))
    return epochs, values


def last_value(path: Path, key: str) -> float:
    """The last logged value of ``key`` in ``path``; NaN when it was never logged."""
    _, values = epoch_series(path, key)
    return values[-1] if values else math.nan
