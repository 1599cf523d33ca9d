"""Reading a run's ``metrics.csv`` (``experiments.loggers``): one column per logged key, one row
per logging step; a key's epoch values are the rows where its column is filled."""

from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["epoch_series", "last_value", "step_series"]


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the stage run logged no metrics")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _series(path: Path, key: str, at: str) -> tuple[list[int], list[float]]:
    """``(column at, values)`` of ``key`` in ``path``: the rows that hold it."""
    positions, values = [], []
    for row in _rows(path):
        if row.get(key):
            positions.append(int(float(row[at])))
            values.append(float(row[key]))
    return positions, values


def epoch_series(path: Path, key: str) -> tuple[list[int], list[float]]:
    """``(epochs, values)`` of ``key`` in ``path`` (a metrics.csv): the rows that hold it."""
    return _series(path, key, "epoch")


def step_series(path: Path, key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``key`` in ``path`` (a metrics.csv): the rows that hold it."""
    return _series(path, key, "step")


def last_value(path: Path, key: str) -> float:
    """The last logged value of ``key`` in ``path``; NaN when it was never logged."""
    _, values = epoch_series(path, key)
    return values[-1] if values else math.nan
