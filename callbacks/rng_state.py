"""Save the global random states in each checkpoint and restore them on resume.

Lightning checkpoints hold the model, optimizers and loops but not the random generators, so a run
resumed from ``last.ckpt`` shuffles its data and draws its dropout masks differently from a run that
was never interrupted. This callback stores torch (CPU and CUDA), numpy and Python states as
tensors and plain types only, so the checkpoint still loads with ``torch.load(weights_only=True)``,
and sets them back when the checkpoint is restored (after setup, before the first resumed batch).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning import Callback

__all__ = ["RNGStateCheckpoint"]


def collect_rng_states() -> dict[str, Any]:
    """Torch, CUDA, numpy and Python random states as tensors and plain Python values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    py = states["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = states["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))


class RNGStateCheckpoint(Callback):
    """Make ``fit(ckpt_path=...)`` continue the random streams of the interrupted run."""

    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_states(state_dict)
