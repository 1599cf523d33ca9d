"""A ModelCheckpoint whose saved state names its files relative to its folder.

Lightning's ModelCheckpoint stores absolute paths in every checkpoint (best, k-th best, last), so
a run folder that is copied elsewhere and resumed would test its best checkpoint from the old
place (or fail where that is gone). :class:`RunCheckpoint` saves those paths relative to
``dirpath`` and resolves them against its own ``dirpath`` when a checkpoint is loaded; absolute
paths under the old ``dirpath`` (checkpoints written by a plain ModelCheckpoint) are moved along.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["RunCheckpoint"]

_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")
_HERE = "."  # the saved dirpath: paths are relative to wherever the folder is now


def _relative(path: str, folder: str) -> str:
    if not path or not os.path.isabs(path) or not folder:
        return path
    inside = os.path.commonpath([path, folder]) == os.path.normpath(folder)
    return os.path.relpath(path, folder) if inside else path


def _resolved(path: str, old_folder: str, folder: str) -> str:
    if not path or not folder:
        return path
    if not os.path.isabs(path):
        return os.path.join(folder, path)
    return os.path.join(folder, _relative(path, old_folder)) if old_folder != _HERE else path


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (same arguments) that keeps a run folder relocatable."""

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        folder = self.dirpath or ""
        for key in _PATH_KEYS:
            state[key] = _relative(state[key], folder)
        state["best_k_models"] = {
            _relative(k, folder): v for k, v in state["best_k_models"].items()
        }
        state["dirpath"] = _HERE
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state, folder = dict(state_dict), self.dirpath or ""
        old = state.get("dirpath") or _HERE
        for key in _PATH_KEYS:
            if key in state:
                state[key] = _resolved(state[key], old, folder)
        if "best_k_models" in state:
            models = state["best_k_models"]
            state["best_k_models"] = {_resolved(k, old, folder): v for k, v in models.items()}
        state["dirpath"] = self.dirpath
        super().load_state_dict(state)
