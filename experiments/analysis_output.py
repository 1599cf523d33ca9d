"""What every method's analysis step shares (OLR, the disentangled AAE, ISTRC): the device of its
``--device`` flag and the conversion of its results to JSON."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["analysis_device", "jsonable"]


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
