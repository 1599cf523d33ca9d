"""Sweep files: W&B's sweep configuration (``method``, ``metric``, ``parameters``, ``command``)
read and checked, with the line of each key for errors, and their trials: every point of a grid,
or draws of W&B's parameter distributions.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments.sweep_agent import DEFAULT_COMMAND
from experiments.tables import REPO, shown_path

__all__ = [
    "SWEEPS",
    "Sweep",
    "SweepError",
    "grid_trials",
    "load_sweep",
    "local_trials",
    "random_trials",
    "sweep_path",
]

SWEEPS = REPO / "experiments" / "sweeps"
METHODS = ("grid", "random", "bayes")


class SweepError(ValueError):
    """A sweep file or command line that cannot run; the message names the file and line."""


# ---------------------------------------------------------------------------- sweep files
@dataclass(frozen=True)
class Sweep:
    """A sweep file, read and checked.

    Args:
        path: The YAML file.
        config: Its content, as W&B receives it.
        lines: Line (1-based) of each key, by its path of keys (``("parameters", "lr")``).
    """

    path: Path
    config: dict[str, Any]
    lines: dict[tuple[str, ...], int]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def metric(self) -> str:
        return self.config["metric"]["name"]

    @property
    def goal(self) -> str:
        return self.config["metric"].get("goal", "minimize")

    @property
    def parameters(self) -> dict[str, Any]:
        return self.config["parameters"]

    @property
    def command(self) -> list[Any]:
        return list(self.config.get("command") or DEFAULT_COMMAND)

    @property
    def program(self) -> str | None:
        return self.config.get("program")

    def where(self, *keys: str) -> str:
        """``<file>:<line>`` of a key (of its closest parent that has a line)."""
        for end in range(len(keys), 0, -1):
            if keys[:end] in self.lines:
                return f"{shown_path(self.path)}:{self.lines[keys[:end]]}"
        return shown_path(self.path)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node | None, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, str(key.value))
                lines[path] = key.start_mark.line + 1
                walk(value, path)

    walk(yaml.compose(text), ())
    return lines


def sweep_path(name: str) -> Path:
    """``experiments/sweeps/<name>.yaml``, or ``name`` itself when it is a file."""
    if Path(name).is_file():
        return Path(name).resolve()
    path = SWEEPS / f"{name}.yaml"
    if path.is_file():
        return path
    names = sorted(p.stem for p in SWEEPS.glob("*.yaml"))
    close = get_close_matches(Path(name).stem, names, n=3)
    hint = f" Did you mean: {', '.join(f'make sweep NAME={c}' for c in close)}?" if close else ""
    raise SweepError(f"No sweep file {shown_path(path)}.{hint} Sweeps: {' '.join(names)}")


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file: method, metric, parameters and command."""
    shown = shown_path(path)
    text = path.read_text()
    try:
        config, lines = yaml.safe_load(text), _key_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise SweepError(f"{shown}{line}: not valid YAML: {problem}") from exc
    if not isinstance(config, dict):
        raise SweepError(f"{shown}: a sweep file is a mapping (method, metric, parameters, ...)")
    sweep = Sweep(path, config, lines)
    if config.get("method") not in METHODS:
        raise SweepError(f"{sweep.where('method')}: method is one of {', '.join(METHODS)}")
    metric = config.get("metric")
    if not isinstance(metric, dict) or not metric.get("name"):
        raise SweepError(
            f"{sweep.where('metric')}: write metric: {{name: <logged key>, goal: ...}}"
        )
    if metric.get("goal", "minimize") not in ("minimize", "maximize"):
        raise SweepError(f"{sweep.where('metric', 'goal')}: goal is minimize or maximize")
    if not isinstance(config.get("parameters"), dict) or not config["parameters"]:
        raise SweepError(f"{sweep.where('parameters')}: parameters: {{<dotted.key>: {{...}}}}")
    if not isinstance(config.get("command", []), list):
        raise SweepError(f"{sweep.where('command')}: command is a list of items")
    _leaves(sweep)  # every parameter is a mapping
    return sweep


# ---------------------------------------------------------------------------- trials
def _leaves(sweep: Sweep) -> list[tuple[tuple[str, ...], tuple[str, ...], dict]]:
    """``(names, yaml keys, spec)`` of every parameter; nested ``parameters`` are walked."""
    found = []

    def walk(parameters: dict, names: tuple[str, ...], keys: tuple[str, ...]) -> None:
        for name, spec in parameters.items():
            here = (*keys, str(name))
            if not isinstance(spec, dict):
                raise SweepError(
                    f"{sweep.where(*here)}: a parameter is a mapping: {{values: [...]}}, "
                    "{value: ...}, {min: ..., max: ...} or {distribution: ..., ...}"
                )
            if isinstance(spec.get("parameters"), dict):
                walk(spec["parameters"], (*names, str(name)), (*here, "parameters"))
            else:
                found.append(((*names, str(name)), here, spec))

    walk(sweep.parameters, (), ("parameters",))
    return found


def _nest(values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """``{("a", "b"): 1, ("c",): 2}`` -> ``{"a": {"b": 1}, "c": 2}`` (nested parameters)."""
    out: dict[str, Any] = {}
    for names, value in values.items():
        node = out
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = value
    return out


def _distribution(spec: dict, where: str) -> str:
    """The distribution W&B gives ``spec``: named, or inferred from its keys."""
    if "distribution" in spec:
        return spec["distribution"]
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:
        ints = all(
            isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max")
        )
        return "int_uniform" if ints else "uniform"
    raise SweepError(f"{where}: give values, value, min and max, or a distribution")


def _grid_values(spec: dict, where: str) -> list[Any]:
    kind = _distribution(spec, where)
    if kind == "categorical" and "probabilities" not in spec:
        return list(spec["values"])
    if kind == "constant":
        return [spec["value"]]
    if kind == "int_uniform":
        return list(range(spec["min"], spec["max"] + 1))
    if kind == "q_uniform":
        return np.arange(spec["min"], spec["max"], spec.get("q", 1)).tolist()
    raise SweepError(
        f"{where}: a grid takes values (without probabilities), value, int_uniform or "
        f"q_uniform, not {kind}"
    )


def _quantized(x: float, q: float) -> float | int:
    value = round(x / q) * q
    return int(value) if isinstance(q, int) else value


def _sample(spec: dict, rng: random.Random, where: str) -> Any:
    """One draw of W&B's distribution of ``spec``."""
    kind = _distribution(spec, where)
    lo, hi, q = spec.get("min"), spec.get("max"), spec.get("q", 1)
    mu, sigma = spec.get("mu", 0.0), spec.get("sigma", 1.0)
    draws = {
        "constant": lambda: spec["value"],
        "categorical": lambda: rng.choices(spec["values"], weights=spec.get("probabilities"))[0],
        "int_uniform": lambda: rng.randint(lo, hi),
        "uniform": lambda: rng.uniform(lo, hi),
        "q_uniform": lambda: _quantized(rng.uniform(lo, hi), q),
        "log_uniform": lambda: math.exp(rng.uniform(lo, hi)),
        "log_uniform_values": lambda: math.exp(rng.uniform(math.log(lo), math.log(hi))),
        "q_log_uniform": lambda: _quantized(math.exp(rng.uniform(lo, hi)), q),
        "q_log_uniform_values": lambda: _quantized(
            math.exp(rng.uniform(math.log(lo), math.log(hi))), q
        ),
        "inv_log_uniform": lambda: math.exp(-rng.uniform(lo, hi)),
        "inv_log_uniform_values": lambda: (
            1 / math.exp(rng.uniform(math.log(1 / hi), math.log(1 / lo)))
        ),
        "normal": lambda: rng.gauss(mu, sigma),
        "q_normal": lambda: _quantized(rng.gauss(mu, sigma), q),
        "log_normal": lambda: math.exp(rng.gauss(mu, sigma)),
        "q_log_normal": lambda: _quantized(math.exp(rng.gauss(mu, sigma)), q),
        "beta": lambda: rng.betavariate(spec.get("a", 1.0), spec.get("b", 1.0)),
        "q_beta": lambda: _quantized(rng.betavariate(spec.get("a", 1.0), spec.get("b", 1.0)), q),
    }
    if kind not in draws:
        raise SweepError(f"{where}: unknown distribution {kind!r} (W&B's: {', '.join(draws)})")
    try:
        return draws[kind]()
    except (KeyError, TypeError, ValueError) as exc:
        raise SweepError(f"{where}: {kind} needs other keys than {sorted(spec)}: {exc}") from exc


def grid_trials(sweep: Sweep) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, parameters in name order as W&B's grid."""
    leaves = sorted(_leaves(sweep))
    choices = [_grid_values(spec, sweep.where(*keys)) for _, keys, spec in leaves]
    names = [names for names, _, _ in leaves]
    return [_nest(dict(zip(names, combo, strict=True))) for combo in itertools.product(*choices)]


def random_trials(sweep: Sweep, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` draws of every parameter; the same ``seed`` gives the same trials."""
    rng, leaves = random.Random(seed), _leaves(sweep)
    return [
        _nest({names: _sample(spec, rng, sweep.where(*keys)) for names, keys, spec in leaves})
        for _ in range(count)
    ]


def local_trials(sweep: Sweep, method: str, count: int | None, seed: int) -> list[dict]:
    """The trials a local run of ``sweep`` with ``method`` runs (the first ``count`` of a grid)."""
    name = sweep.name
    if method == "bayes":
        raise SweepError(
            f"{sweep.where('method')}: a bayes sweep picks each trial from the results of the "
            "ones before, on W&B's server; it cannot run locally. Run it through W&B "
            f"(.venv/bin/wandb login, then make sweep NAME={name}), or locally as a random "
            "search over the same parameters: "
            f"make sweep NAME={name} LOCAL=1 SEARCH=random COUNT=10"
        )
    if method == "random":
        if not count:
            search = "" if sweep.method == "random" else " SEARCH=random"
            raise SweepError(
                f"{sweep.where('method')}: a random sweep runs until it is stopped; locally it "
                f"needs a number of trials: make sweep NAME={name} LOCAL=1{search} COUNT=10"
            )
        return random_trials(sweep, count, seed)
    trials = grid_trials(sweep)
    return trials[:count] if count else trials
