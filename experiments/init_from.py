"""``--run.init_from``: start a fit from the weights of other runs (fine-tuning, stage pipelines),
or give validate, test and predict the weights they evaluate (a stage that trains nothing).

The value is either a checkpoint (the whole model, strict), or a list of parts, each the weights
of one submodule of a checkpoint's model loaded into one submodule of this model, which may be of
another class (a teacher's encoder into a student's ``teacher``)::

    run:
      init_from: latest:minmaxcam/synthetic_pretrain_target      # whole model
    run:
      init_from:
        - {checkpoint: latest:olr/teacher, source: encoder, target: teacher}
        - {checkpoint: runs/x/checkpoints/last.ckpt, source: "", target: decoder}

A checkpoint is a file, ``latest:<run name>`` (``checkpoints/last.ckpt`` of that name's newest
run) or ``best:<run name>`` (the best checkpoint of that name's newest run, the one its test
evaluated, as its ``last.ckpt`` records it; ``last.ckpt`` when the run monitored nothing): a later
stage of a pipeline starts from the weights whose numbers the stage before reported. Each part is
strict within its target: every key of the target and no other, with equal shapes.
:func:`resolve_init_from` finds the files (before anything is built), :func:`check_init_from`
compares keys and shapes with the built model, and :func:`load_init_from` loads; the CLI runs the
three before it creates the run folder, and records the resolved files in ``config.yaml``. Parts
load in order: a later part overrides what an earlier one loaded into the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.run_dirs import best_checkpoint, latest_run_dir
from lightning_modules.components.weights import compare_state_dicts

__all__ = [
    "BEST",
    "LATEST",
    "RUN_REFERENCES",
    "InitFrom",
    "InitFromError",
    "check_init_from",
    "init_from_parts",
    "load_init_from",
    "resolve_checkpoint",
    "resolve_init_from",
]

LATEST = "latest:"  # latest:<name>: the newest run of <name>, its last.ckpt
BEST = "best:"  # best:<name>: the newest run of <name>, its best checkpoint
RUN_REFERENCES = (LATEST, BEST)
SHOWN = 5  # keys named in an error, per kind of problem


@dataclass
class InitFrom:
    """One part of ``--run.init_from``.

    Args:
        checkpoint: A checkpoint file, ``latest:<run name>`` or ``best:<run name>``.
        source: A submodule of the checkpoint's model by its dotted name (``encoder``,
            ``backbone.layer4``); ``""`` is the whole model.
        target: A submodule of this model by its dotted name; ``""`` is the whole model.
    """

    checkpoint: str
    source: str = ""
    target: str = ""


class InitFromError(ValueError):
    """A part of ``--run.init_from`` does not fit the model (keys, shapes or names)."""


def init_from_parts(value: str | list[Any] | None) -> list[InitFrom]:
    """The parts of a ``--run.init_from`` value: a string is the whole model from that checkpoint;
    list items are InitFrom, mappings or namespaces with InitFrom's fields."""
    if value is None:
        return []
    if isinstance(value, str):
        return [InitFrom(value)]
    return [p if isinstance(p, InitFrom) else InitFrom(**dict(_fields(p))) for p in value]


def _fields(part: Any) -> Mapping[str, Any]:
    return part.as_dict() if hasattr(part, "as_dict") else part


def _where(count: int, index: int) -> str:
    return "--run.init_from" if count == 1 else f"--run.init_from[{index}]"


def resolve_checkpoint(value: str, root: Path, where: str = "--run.init_from") -> Path:
    """The checkpoint file that ``value`` names: a path, or ``latest:``/``best:<run name>`` under
    ``root``.

    ``latest:<name>`` is ``checkpoints/last.ckpt`` of the newest ``root/<name>/<timestamp>``, so
    that an experiment YAML can start from the run of another (a pre-training step);
    ``best:<name>`` is that run's best checkpoint (``run_dirs.best_checkpoint``).
    """
    prefix = next((p for p in RUN_REFERENCES if value.startswith(p)), None)
    if prefix is None:
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no checkpoint file {path}")
        return path
    name = value[len(prefix) :]
    try:
        run_dir = latest_run_dir(root, name)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{where}={value}: no {root / name}/<timestamp>/checkpoints/last.ckpt; "
            f"run `make experiment NAME={name}` first (or give a checkpoint path)"
        ) from None
    if prefix == BEST:
        return best_checkpoint(run_dir)[0]
    return run_dir / "checkpoints" / "last.ckpt"


def resolve_init_from(value: str | list[Any], root: Path) -> tuple[list[InitFrom], Any]:
    """The parts of ``value`` with their checkpoint files found, and ``value`` with each
    checkpoint replaced by its file (what ``config.yaml`` records)."""
    parts = init_from_parts(value)
    resolved = [
        replace(p, checkpoint=str(resolve_checkpoint(p.checkpoint, root, _where(len(parts), i))))
        for i, p in enumerate(parts)
    ]
    if isinstance(value, str):
        return resolved, resolved[0].checkpoint
    for item, part in zip(value, resolved, strict=True):
        if isinstance(item, InitFrom):
            item.checkpoint = part.checkpoint
        else:
            item["checkpoint"] = part.checkpoint
    return resolved, value


def _load_state_dict(path: str, where: str) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InitFromError(f"{where}: {path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint["state_dict"]


def _source_part(state: Mapping[str, Any], source: str, path: str, where: str) -> dict[str, Any]:
    if not source:
        return dict(state)
    prefix = source.rstrip(".") + "."
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not part:
        tops = sorted({k.split(".", 1)[0] for k in state})
        raise InitFromError(
            f"{where}: no weights under source {source!r} in {path}; "
            f"its top-level submodules: {', '.join(tops)}"
        )
    return part


def _target_module(model: nn.Module, target: str, where: str) -> nn.Module:
    if not target:
        return model
    try:
        return model.get_submodule(target.rstrip("."))
    except AttributeError:
        children = ", ".join(name for name, _ in model.named_children()) or "none"
        raise InitFromError(
            f"{where}: {type(model).__name__} has no submodule {target!r}; "
            f"its submodules: {children}"
        ) from None


def _few(keys: list[str]) -> str:
    more = f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def _problems(loaded: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """What keeps ``loaded`` from loading strictly where ``expected`` is the state dict."""
    missing, unexpected, mis_shaped = compare_state_dicts(expected, loaded)
    shapes = [
        f"{k} (checkpoint {tuple(loaded[k].shape)}, model {tuple(expected[k].shape)})"
        for k in mis_shaped
    ]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} missing (in the model, not the checkpoint): {_few(missing)}"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected (in the checkpoint, not the model): {_few(unexpected)}"
        )
    if shapes:
        problems.append(f"{len(shapes)} with other shapes: {_few(shapes)}")
    return problems


def check_init_from(
    model: nn.Module, parts: list[InitFrom]
) -> list[tuple[nn.Module, dict[str, Any]]]:
    """Each part's target submodule and the weights for it, after checking keys and shapes.

    Raises:
        InitFromError: naming the part, its checkpoint, source and target, and the keys that are
            missing, unexpected or of another shape (a few of each, with their count).
    """
    plans = []
    for index, part in enumerate(parts):
        where = _where(len(parts), index)
        state = _load_state_dict(part.checkpoint, where)
        weights = _source_part(state, part.source, part.checkpoint, where)
        module = _target_module(model, part.target, where)
        problems = _problems(weights, module.state_dict())
        if problems:
            source = f"source {part.source!r}" if part.source else "the whole model"
            target = f"{part.target!r} ({type(module).__name__})" if part.target else "the model"
            raise InitFromError(
                f"{where}: {source} of {part.checkpoint} does not fit {target} "
                f"of {type(model).__name__}; keys (relative to both): " + "; ".join(problems)
            )
        plans.append((module, weights))
    return plans


def load_init_from(model: nn.Module, parts: list[InitFrom]) -> None:
    """Check every part (:func:`check_init_from`), then load them in order, strictly."""
    for module, weights in check_init_from(model, parts):
        module.load_state_dict(weights, strict=True)
