"""What every method's analysis step shares (OLR, the disentangled AAE, ISTRC, UST, exemplar SR,
VEBI): the device of its ``--device`` flag, its options dataclass from the parsed flags
(``options_from``), the conversion of its results to JSON, [-1, 1] images to [0, 1] (``unit``)
and the seeded derangement its shuffled controls use (``derangement``)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = [
    "analysis_device",
    "analysis_parser",
    "derangement",
    "jsonable",
    "options_from",
    "unit",
]

Options = TypeVar("Options")


def analysis_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` as a device."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def jsonable(value: Any) -> Any:
    """Tensors to lists, non-finite floats to None, recursively (``json.dumps(allow_nan=False)``
    then writes standard JSON)."""
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def unit(images: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((images + 1) / 2).clamp(0, 1)


def derangement(count: int, seed: int = 0) -> Tensor:
    """A seeded permutation of ``range(count)`` without fixed points (``count`` >= 2)."""
    if count < 2:
        raise ValueError(f"a derangement needs at least 2 rows, got {count}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(count, generator=generator)
        if not (order == torch.arange(count)).any():
            return order


def print_summary(results: dict[str, Any]) -> int:
    """Print which assertions passed and the tables written (an analysis command's output); 0."""
    passed = {name: check["passed"] for name, check in results["assertions"].items()}
    print(json.dumps({"assertions": passed, "tables": results["tables"]}, indent=2))
    return 0


def analysis_parser(doc: str, prefix: str, batch_size: int) -> argparse.ArgumentParser:
    """The flags every analysis command takes: ``--root`` (required), ``--prefix`` (its run
    names' start), ``--out``, ``--device``, ``--seed``, ``--batch-size`` and ``--no-progress``;
    ``doc``'s first line describes the command."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--prefix", default=prefix)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def options_from(cls: type[Options], args: argparse.Namespace, **converted: Any) -> Options:
    """The options dataclass ``cls`` from parsed flags: each field from the flag of its name,
    ``progress`` from ``--no-progress``; ``converted`` gives fields a flag holds in another form
    (a list as a tuple)."""
    flags = vars(args)
    values: dict[str, Any] = {}
    for field in fields(cls):
        if field.name in converted:
            values[field.name] = converted[field.name]
        elif field.name == "progress" and "no_progress" in flags:
            values[field.name] = not flags["no_progress"]
        elif field.name in flags:
            values[field.name] = flags[field.name]
    return cls(**values)
