"""The finished stage runs an analysis reads (OLR, the AAE): folders, checkpoints, modules, data.

A stage run is ``<root>/<name>/<timestamp>/`` as the CLI writes it (``config.yaml``,
``checkpoints/last.ckpt`` and, when the run monitored a metric, its best checkpoint). The newest
run of a name is taken (``experiments.run_dirs.latest_run_dir``). Its module is rebuilt with its
own class's ``load_from_checkpoint`` from the best checkpoint that ``last.ckpt`` records (the
monitored ``ModelCheckpoint``'s ``best_model_path``), else from ``last.ckpt``; its DataModule from
the ``data`` section of its ``config.yaml``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from lightning import LightningDataModule, LightningModule

from experiments.run_dirs import best_checkpoint, latest_run_dir

__all__ = ["StageRun", "find_stage_run", "import_class"]


def import_class(class_path: str) -> type:
    """The class named by a dotted ``class_path`` (``package.module.Class``)."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"class_path must be dotted (package.module.Class), got {class_path!r}")
    return getattr(importlib.import_module(module_name), name)


@dataclass(frozen=True)
class StageRun:
    """One finished stage run.

    Attributes:
        name: The run name (``olr/synthetic_siamese``).
        run_dir: Its folder.
        checkpoint: The checkpoint its module is loaded from.
        which: ``best`` (the monitored checkpoint) or ``last`` (no best one recorded).
    """

    name: str
    run_dir: Path
    checkpoint: Path
    which: Literal["best", "last"]

    @property
    def config(self) -> dict[str, Any]:
        """The run's saved ``config.yaml``."""
        path = self.run_dir / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the stage run {self.name} has no config")
        return yaml.safe_load(path.read_text()) or {}

    def section(self, key: Literal["model", "data"]) -> tuple[str, dict[str, Any]]:
        """``(class_path, init_args)`` of the ``model`` or ``data`` section of ``config.yaml``."""
        part = self.config.get(key) or {}
        if "class_path" not in part:
            raise ValueError(f"{self.run_dir / 'config.yaml'} has no {key}.class_path")
        return part["class_path"], dict(part.get("init_args") or {})

    def load_module(self, **kwargs: Any) -> LightningModule:
        """The run's module (its ``model.class_path``) from ``checkpoint``, in eval mode on CPU."""
        cls = import_class(self.section("model")[0])
        module = cls.load_from_checkpoint(self.checkpoint, map_location="cpu", **kwargs)
        return module.eval()

    def datamodule(self, **overrides: Any) -> LightningDataModule:
        """The run's DataModule (``data`` of ``config.yaml``) with ``overrides`` of its args."""
        class_path, init_args = self.section("data")
        return import_class(class_path)(**(init_args | overrides))

    def describe(self) -> dict[str, str]:
        """Folder, checkpoint and which one it is, for the analysis record."""
        return {
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "which": self.which,
        }


def find_stage_run(root: Path, name: str, flag: str) -> StageRun:
    """The newest finished run of ``name`` under ``root``; ``flag`` names the option in errors."""
    try:
        run_dir = latest_run_dir(root, name)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{flag} {name}: no finished run {root / name}/<timestamp>/checkpoints/last.ckpt; run "
            f"the stage first, e.g. `make experiment NAME={name}`"
        ) from None
    checkpoint, which = best_checkpoint(run_dir)
    return StageRun(name, run_dir, checkpoint, which)
