"""What every method's analysis step shares (OLR, the disentangled AAE, ISTRC, UST, exemplar SR):
the device of its ``--device`` flag, the conversion of its results to JSON, [-1, 1] images to
[0, 1] (``unit``) and the seeded derangement its shuffled controls use (``derangement``)."""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["analysis_device", "derangement", "jsonable", "unit"]


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
