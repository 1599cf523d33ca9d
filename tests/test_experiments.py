"""Every experiment YAML is valid against the code, without instantiating or downloading anything.

Checks per file: it loads with OmegaConf and its ``${...}`` interpolations resolve; it opens with a
header comment (experiments: with their own ``make experiment NAME=...`` line); a pipeline YAML's
steps load (``experiments/pipeline_file.py``); every ``class_path``
(model, data, loggers, callbacks, nested ones) is a full import path that imports; every
``init_args`` key is a parameter of that class's ``__init__``; trainer / checkpoint / nan_guard
keys are parameters of Trainer / ModelCheckpoint / NaNGuard; ``trainer.callbacks`` is only in
experiments.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from callbacks.nan_guard import NaNGuard
from experiments.pipeline_file import is_pipeline_file, load_pipeline
from experiments.tables import expected

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
BASE = EXPERIMENTS / "_base.yaml"
ALL = sorted(
    p for p in EXPERIMENTS.rglob("*.yaml") if "sweeps" not in p.relative_to(EXPERIMENTS).parts
)
PIPELINES = [p for p in ALL if is_pipeline_file(p)]  # steps, checked by load_pipeline
CONFIGS = [p for p in ALL if p not in PIPELINES]
TOP_LEVEL = {"seed_everything", "model", "data", "trainer", "checkpoint", "nan_guard", "run"}
GROUPS = {"trainer": Trainer, "checkpoint": ModelCheckpoint, "nan_guard": NaNGuard}


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(EXPERIMENTS).as_posix() for p in paths]


def _parameters(cls: type) -> tuple[set[str], bool]:
    """Names accepted by ``cls.__init__`` and whether it takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters.values()
    names = {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"self"}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    assert module, f"class_path {class_path!r} must be a full import path"
    return getattr(importlib.import_module(module), name)


def _class_entries(node: Any, where: str) -> list[tuple[str, dict]]:
    """Every ``{class_path: ...}`` mapping inside ``node``, with its location."""
    found = []
    if isinstance(node, dict):
        if "class_path" in node:
            found.append((where, node))
        for key, value in node.items():
            found += _class_entries(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _class_entries(value, f"{where}[{i}]")
    return found


@pytest.fixture(params=CONFIGS, ids=_ids(CONFIGS))
def config(request) -> tuple[Path, dict]:
    path = request.param
    return path, OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}


def test_there_are_experiments():
    assert BASE in CONFIGS and len(CONFIGS) > 1


@pytest.mark.parametrize("path", ALL, ids=_ids(ALL))
def test_header_comment(path):
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 2, f"{path}: open with a comment naming paper, table, expected number"
    if path != BASE:
        name = path.relative_to(EXPERIMENTS).with_suffix("").as_posix()
        assert f"make experiment NAME={name}" in "\n".join(header), f"{path}: run command missing"
        # the shared form: "# Expected: <logged key> = <number>" or "# Expected: none"
        found = expected(name)  # raises on a missing or malformed line
        if found is not None:
            metric, value = found
            assert metric.startswith(("val/", "test/")), f"{path}: {metric} is not a logged key"
            assert re.match(r"^-?\d", value), f"{path}: expected value {value!r} is not a number"


@pytest.mark.parametrize("path", PIPELINES, ids=_ids(PIPELINES))
def test_pipeline_steps_load(path):
    assert load_pipeline(path).steps


def test_keys_and_class_paths(config):
    path, cfg = config
    assert set(cfg) <= TOP_LEVEL, f"{path}: unknown top-level keys {set(cfg) - TOP_LEVEL}"
    for group, cls in GROUPS.items():
        names, _ = _parameters(cls)
        unknown = set(cfg.get(group) or {}) - names
        assert not unknown, f"{path}: {group} keys {unknown} are not {cls.__name__} parameters"
    for where, entry in _class_entries(cfg, path.name):
        assert set(entry) <= {"class_path", "init_args", "dict_kwargs"}, f"{path}: {where}"
        cls = _import(entry["class_path"])
        names, var_kw = _parameters(cls)
        unknown = set(entry.get("init_args") or {}) - names
        assert var_kw or not unknown, f"{path}: {where} {cls.__name__} has no {unknown}"


def test_experiments_name_model_and_data(config):
    path, cfg = config
    if path == BASE:
        assert "callbacks" not in (cfg.get("trainer") or {}), (
            "trainer.callbacks belongs to experiments"
        )
        assert "model" not in cfg and "data" not in cfg
        return
    assert "class_path" in (cfg.get("model") or {}), f"{path}: model.class_path missing"
    assert "class_path" in (cfg.get("data") or {}), f"{path}: data.class_path missing"


def _hparams(entry: dict) -> dict[str, Any]:
    """What ``save_hyperparameters()`` would record: signature defaults updated by init_args."""
    cls = _import(entry["class_path"])
    params = inspect.signature(cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    return {**defaults, **(entry.get("init_args") or {})}


def test_model_and_data_hparams_do_not_clash(config):
    """Lightning refuses to log model and data hparams that share a key with different values."""
    path, cfg = config
    if path == BASE:
        return
    model, data = _hparams(cfg["model"]), _hparams(cfg["data"])
    clash = {k: (model[k], data[k]) for k in model.keys() & data.keys() if model[k] != data[k]}
    assert not clash, f"{path}: model and data hparams differ on {clash} (rename one)"
