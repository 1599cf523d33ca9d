"""Sweeps: one sweep file, run by W&B's agent or here, trial after trial, without a W&B server.

A sweep file (``experiments/sweeps/<name>.yaml``) is W&B's sweep configuration: ``method`` (grid,
random or bayes), ``metric`` (``name``, ``goal``), ``parameters`` (values or distributions, in
W&B's terms) and ``command``, the trial's command line with W&B's macros (``${args}``, ...).

With W&B credentials, ``main`` creates the sweep on the server and starts ``wandb agent``.
With ``--local``, or offline (no credentials, or ``WANDB_MODE`` offline or disabled), it draws the
trials itself (every grid point, or ``--count`` random draws) and runs each trial's command line,
expanded by :func:`expand_command` as W&B's agent expands it, one after another: each trial is
an ordinary run with its own run folder. It then writes the trials ranked by the sweep's metric
(the last value in each run folder's ``metrics.csv``, as W&B's run summary) to
``<root>/sweeps/<name>.md`` and prints it. A trial whose run folder already holds its
configuration and its metric is not run again (:func:`experiments.tables.find_run`), so an
interrupted sweep continues where it stopped. Before anything runs, every trial's command line is
parsed with the CLI's parser (building nothing) and its values must reach the config.

    python -m experiments.sweep minmaxcam_lambda                      # W&B, or local offline
    python -m experiments.sweep minmaxcam_lambda --local -- --trainer.max_epochs=1
    python -m experiments.sweep face_attributes_celeba_64px_lr --local --method random --count 8
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments.run_dirs import run_name_from_configs
from experiments.tables import (
    REPO,
    find_run,
    flatten,
    merged_values,
    parse_overrides,
    read_metric,
    recorded_values,
    same_value,
    shown_path,
)
from experiments.wandb_setup import wandb_has_credentials

__all__ = [
    "SweepError",
    "Sweep",
    "agent_args",
    "check_trials",
    "cli_args",
    "command_problems",
    "expand_command",
    "grid_trials",
    "load_sweep",
    "main",
    "random_trials",
]

SWEEPS = REPO / "experiments" / "sweeps"
#: What W&B's agent runs when a sweep file has no ``command``.
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
METHODS = ("grid", "random", "bayes")
SUBCOMMANDS = ("fit", "validate", "test", "predict", "run")
MAX_FAILURES_IN_A_ROW = 3  # then the sweep stops: the trials most likely fail for one reason
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
_MACRO = re.compile(r"\$\{[^}]*\}")


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


# ---------------------------------------------------------------------------- W&B's agent
def agent_args(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """A trial's parameter values in the forms W&B's agent offers as command macros.

    Each value is written as Python's ``str`` gives it: ``args`` (``--name=value``),
    ``args_no_equals`` (``--name value``), ``args_no_hyphens`` (``name=value``),
    ``args_no_boolean_flags`` (as ``args``, but ``--name`` for True and nothing for False),
    ``args_json`` (one JSON string of all values), ``args_append_hydra`` (``+name=value``) and
    ``args_override_hydra`` (``++name=value``).
    """
    forms: dict[str, list[str]] = {
        "args": [],
        "args_no_equals": [],
        "args_no_hyphens": [],
        "args_no_boolean_flags": [],
        "args_append_hydra": [],
        "args_override_hydra": [],
    }
    for name, value in values.items():
        flag = f"{name}={value}"
        forms["args"].append("--" + flag)
        forms["args_no_equals"] += ["--" + name, str(value)]
        forms["args_no_hyphens"].append(flag)
        forms["args_append_hydra"].append("+" + flag)
        forms["args_override_hydra"].append("++" + flag)
        if not isinstance(value, bool):
            forms["args_no_boolean_flags"].append("--" + flag)
        elif value:
            forms["args_no_boolean_flags"].append("--" + name)
    forms["args_json"] = [json.dumps(dict(values))]
    return forms


def _macros(values: Mapping[str, Any], program: str | None, args_json_file: Path | None) -> dict:
    macros = {
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [program] if program else [],
        **agent_args(values),
    }
    if args_json_file is not None:
        macros["args_json_file"] = [str(args_json_file)]
    return macros


def expand_command(
    command: Sequence[Any],
    values: Mapping[str, Any],
    program: str | None,
    environ: Mapping[str, str],
    args_json_file: Path | None = None,
) -> list[str]:
    """The command line W&B's agent runs for a trial with parameter ``values``.

    First ``${envvar:NAME}`` anywhere in an item becomes ``environ[NAME]`` (``NAME`` when unset).
    Then an item that is a whole macro is replaced by the macro's items: ``${env}``
    (``/usr/bin/env``), ``${interpreter}`` (``python``, whichever is first on PATH),
    ``${program}`` (the sweep's ``program``), ``${args_json_file}`` (a JSON file of the values)
    and the forms of :func:`agent_args` (``${args}``, ...). An unknown whole macro is dropped; a
    macro inside a longer item (``"bash -c '... ${args}'"``) stays as it is written.
    """
    macros = _macros(values, program, args_json_file)
    argv: list[str] = []
    for item in command:
        item = _ENVVAR.sub(lambda m: environ.get(m[1], m[1]), str(item))
        if item.startswith("${") and item.endswith("}"):
            argv += macros.get(item[2:-1]) or []
        else:
            argv.append(item)
    return argv


def _executable(argv: Sequence[str]) -> int:
    """Index of the program in ``argv``: after ``/usr/bin/env`` and its ``NAME=value`` items."""
    i = 0
    if argv and Path(argv[0]).name == "env":
        i = 1
        while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-"):
            i += 1
    return i


def command_problems(sweep: Sweep) -> list[str]:
    """What in the sweep's ``command`` W&B's agent would not run as meant (empty when fine):
    a macro inside a longer item (never expanded), a macro the agent does not know (dropped), and
    an interpreter looked up on PATH (the project's Python only while its venv is active)."""
    where, problems = sweep.where("command"), []
    known = _macros({}, sweep.program, Path("file.json"))
    for item in map(str, sweep.command):
        whole = item.startswith("${") and item.endswith("}")
        if whole and item[2:-1] not in known and not _ENVVAR.fullmatch(item):
            problems.append(f"{where}: W&B's agent knows no {item} and leaves it out")
        inner = [m for m in _MACRO.findall(item) if not _ENVVAR.fullmatch(m)]
        if inner and not whole:
            problems.append(
                f"{where}: {', '.join(inner)} inside {item[:50]!r}...: W&B's agent replaces only "
                "an item that is a whole macro, so this reaches the trial unexpanded; make "
                "${args} an item of its own"
            )
    argv = expand_command(sweep.command, {}, sweep.program, {})
    program = argv[_executable(argv)] if _executable(argv) < len(argv) else ""
    if "/" not in program:
        problems.append(
            f"{where}: the trial runs {program or 'nothing'!r} found on PATH; write "
            ".venv/bin/python, the project's Python (${interpreter} is 'python' from PATH, the "
            "project's only while its venv is active)"
        )
    return problems


def cli_args(argv: Sequence[str]) -> list[str]:
    """The experiments CLI's arguments in a trial's command line, from its subcommand on.

    The command line must run ``<python> -m experiments <subcommand> ...`` or ``<python>
    experiments/__main__.py <subcommand> ...``.
    """
    start = _executable(argv) + 1
    rest = list(argv[start:])
    if rest[:2] == ["-m", "experiments"]:
        rest = rest[2:]
    elif rest and (REPO / rest[0]).resolve() in (
        REPO / "experiments",
        REPO / "experiments" / "__main__.py",
    ):
        rest = rest[1:]
    else:
        rest = []
    if not rest or rest[0] not in SUBCOMMANDS:
        raise SweepError(
            "the command does not run the experiments CLI (.venv/bin/python -m experiments "
            f"run --config ...): {shlex.join(argv)}"
        )
    return rest


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


# ---------------------------------------------------------------------------- checking trials
def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists and paths as text, as they compare with YAML's values."""
    return json.loads(json.dumps(values, default=str))


def _expected(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat config values a trial's parameters set: a ``config`` parameter is a config file."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name == "config":
            out.update(merged_values([REPO / str(value)]))
        else:
            out.update(flatten(value, name))
    return _plain(out)


class TrialParser:
    """The experiments CLI's parser (LatentLabCLI's, as ``run`` builds it), without building a
    model, data or anything else; paths are relative to the repository, as in a trial."""

    def __init__(self) -> None:
        from jsonargparse import Namespace

        from experiments.cli import LatentLabCLI

        class _ParserOnly(LatentLabCLI):
            def parse_arguments(self, parser, args) -> None:
                self.config = Namespace(seed_everything=False)

            def before_instantiate_classes(self) -> None:
                pass

            def instantiate_classes(self) -> None:
                pass

        self.parser = _ParserOnly(args=[], run=False, environ={}).parser
        self.parser.exit_on_error = False  # an ArgumentError to report, not an exit

    def problem(self, values: Mapping[str, Any], argv: Sequence[str]) -> str | None:
        """Why the trial's command line does not parse or does not set ``values`` (None: fine)."""
        from jsonargparse import ArgumentError

        try:
            args = cli_args(argv)[1:]
            with contextlib.chdir(REPO):
                config = self.parser.parse_args(args)
        except (ArgumentError, SweepError) as exc:
            return " ".join(str(exc).split())[:400]
        parsed = _plain(flatten(config.as_dict()))
        for key, value in _expected(values).items():
            if key not in parsed or not same_value(parsed[key], value):
                return f"{key} is {parsed.get(key)!r} in the parsed config, not {value!r}"
        return None


def check_trials(
    sweep: Sweep,
    trials: Sequence[Mapping[str, Any]],
    environ: Mapping,
    extra: Sequence[str] = (),
    parser: TrialParser | None = None,
) -> None:
    """Refuse a sweep whose command, or any of whose ``trials`` (with ``extra`` arguments
    appended), the CLI would not run as the parameters say (``parser``: made when None)."""
    problems = command_problems(sweep)
    if not problems:
        parser = parser or TrialParser()
        for number, values in enumerate(trials, 1):
            argv = expand_command(sweep.command, values, sweep.program, environ) + list(extra)
            problem = parser.problem(values, argv)
            if problem:
                problems.append(
                    f"{sweep.where('command')}: trial {number} ({_shown(values)}): {problem}"
                )
    if problems:
        raise SweepError("\n".join(problems))


def _shown(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


# ---------------------------------------------------------------------------- running locally
def trial_runs(argv: Sequence[str]) -> tuple[Path, dict[str, Any]]:
    """``(<run.root>/<run.name>, flat config values)`` of a trial's command line: the folder its
    run folders go in, and the values its ``config.yaml`` records."""
    sources: list[Path | dict[str, Any]] = []
    configs: list[Path] = []
    args = iter(cli_args(argv)[1:])
    for arg in args:
        if arg == "--config":
            arg = "--config=" + next(args, "")
        if arg.startswith("--config="):
            configs.append(REPO / arg.partition("=")[2])
            sources.append(configs[-1])
        else:
            sources.append(parse_overrides([arg]))
    values = merged_values(sources)
    name = values.get("run.name") or run_name_from_configs(configs)
    return REPO / str(values.get("run.root") or "runs") / name, recorded_values(values)


@dataclass
class Trial:
    """One trial of a local sweep: its number, parameter values, command line and outcome."""

    number: int
    values: dict[str, Any]
    argv: list[str]
    run_dir: Path | None = None
    log: Path | None = None
    outcome: str = "not run"


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(
        "    " + line for line in path.read_text(errors="replace").splitlines()[-lines:]
    )


def run_local(
    sweep: Sweep,
    trials: Sequence[dict[str, Any]],
    root: Path,
    extra: Sequence[str],
    environ: Mapping[str, str],
) -> list[Trial]:
    """Run the trials not run before, one after another, ``extra`` appended to each command line;
    their logs go to ``<root>/sweeps/<name>/logs``."""
    logs = root / "sweeps" / sweep.name / "logs"
    done, failures = [], 0
    for number, values in enumerate(trials, 1):
        json_file = logs / f"trial_{number:03d}.json"
        argv = expand_command(sweep.command, values, sweep.program, environ, json_file) + list(
            extra
        )
        trial = Trial(number, values, argv)
        done.append(trial)
        runs, wanted = trial_runs(argv)
        head = f"trial {number}/{len(trials)} ({_shown(values)})"
        trial.run_dir = find_run(runs, wanted, sweep.metric)
        if trial.run_dir is not None:
            trial.outcome = "done before"
            print(f"{head}: done before, {shown_path(trial.run_dir)}", flush=True)
            continue
        logs.mkdir(parents=True, exist_ok=True)
        if "${args_json_file}" in map(str, sweep.command):
            json_file.write_text(json.dumps(values))
        trial.log = logs / f"trial_{number:03d}.log"
        print(f"{head}: running, log {shown_path(trial.log)}", flush=True)
        with trial.log.open("w") as out:
            code = subprocess.call(
                argv, cwd=REPO, env=dict(environ), stdout=out, stderr=subprocess.STDOUT
            )
        trial.run_dir = find_run(runs, wanted, sweep.metric)
        if trial.run_dir is not None:
            trial.outcome, failures = "ran", 0
            continue
        folder = find_run(runs, wanted, None)
        if code == 0 and folder is not None:
            trial.outcome = f"logged no {sweep.metric}"
            print(f"  {shown_path(folder)}/metrics.csv has no {sweep.metric}", flush=True)
        else:
            trial.outcome = f"failed (exit {code})"
            print(f"  failed (exit {code}); the end of its log:\n{_tail(trial.log)}", flush=True)
        failures += 1
        if failures == MAX_FAILURES_IN_A_ROW:
            print(f"{failures} trials in a row failed: the sweep stops here", flush=True)
            break
    return done


def markdown(sweep: Sweep, trials: Sequence[Trial], command: str) -> str:
    """The trials as a markdown table, best ``metric`` first (per the goal), then the others."""
    metric, maximize = sweep.metric, sweep.goal == "maximize"
    scored = [(t, read_metric(t.run_dir, metric) if t.run_dir else None) for t in trials]
    ranked = sorted(
        (s for s in scored if s[1] is not None), key=lambda s: -s[1] if maximize else s[1]
    )
    names = list(flatten(trials[0].values)) if trials else []
    lines = [
        f"## Sweep {sweep.name}: `{metric}`, {sweep.goal}d, best first",
        "",
        f"Sweep file: `{shown_path(sweep.path)}`. Command: `{command}`",
        "",
        "| rank | trial | " + " | ".join(f"`{n}`" for n in names) + f" | `{metric}` | run folder |",
        "|---" * (len(names) + 4) + "|",
    ]
    unranked = [s for s in scored if s[1] is None]
    for rank, (trial, value) in enumerate([*ranked, *unranked], 1):
        cells = [str(v) for v in flatten(trial.values).values()]
        shown = f"{value:.4g}" if value is not None else trial.outcome
        where = trial.run_dir or trial.log
        folder = f"`{shown_path(where)}`" if where else ""
        position = str(rank) if value is not None else "–"
        lines.append(
            f"| {position} | {trial.number} | " + " | ".join(cells) + f" | {shown} | {folder} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- W&B
def offline_reason(environ: Mapping[str, str]) -> str | None:
    """Why a sweep cannot go through W&B here (None: it can)."""
    mode = environ.get("WANDB_MODE")
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={mode}"
    netrc_file = Path(environ.get("NETRC", Path.home() / ".netrc"))
    if not wandb_has_credentials(environ, netrc_file):
        return "no W&B credentials; .venv/bin/wandb login adds them"
    return None


def run_with_wandb(
    sweep: Sweep,
    method: str,
    extra: Sequence[str],
    count: int | None,
    project: str,
    entity: str | None,
) -> int:
    """Create the sweep on W&B's server (``extra`` appended to its command) and run an agent."""
    import wandb

    config = {**sweep.config, "method": method}
    if extra:
        config["command"] = [*sweep.command, *extra]
    sweep_id = wandb.sweep(config, entity=entity, project=project)
    agent = [str(Path(sys.executable).with_name("wandb")), "agent", "--project", project]
    agent += ["--entity", entity] if entity else []
    agent += ["--count", str(count)] if count else []
    more = shlex.join([shown_path(Path(agent[0])), *agent[1:], sweep_id])
    print(f"More agents, from the repository root of any machine with it installed: {more}")
    return subprocess.call([*agent, sweep_id], cwd=REPO)


# ---------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="<name> of experiments/sweeps/<name>.yaml, or a path")
    parser.add_argument("--local", action="store_true", help="run here even with W&B credentials")
    parser.add_argument(
        "--count", type=int, help="trials (random: needed locally; grid: the first)"
    )
    parser.add_argument("--method", choices=("grid", "random"), help="instead of the file's method")
    parser.add_argument("--seed", type=int, default=0, help="of the local random draws")
    parser.add_argument("--root", default="runs", help="<root>/sweeps/<name>.md and logs")
    parser.add_argument("--project", default="latentlab", help="W&B project")
    parser.add_argument("--entity", help="W&B entity (default: yours)")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run a sweep (arguments after ``--`` are appended to every trial); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = _parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    environ = dict(os.environ if environ is None else environ)
    try:
        sweep = load_sweep(sweep_path(args.sweep))
        method = args.method or sweep.method
        reason = "--local" if args.local else offline_reason(environ)
        if reason is None:  # W&B draws the trials: check a sample (all of a grid)
            trials = grid_trials(sweep) if method == "grid" else random_trials(sweep, 3, args.seed)
        else:
            trials = local_trials(sweep, method, args.count, args.seed)
        check_trials(sweep, trials, environ, extra)
        program = expand_command(sweep.command, trials[0], sweep.program, environ)
        program = program[_executable(program)]
        if not (REPO / program).is_file():
            raise SweepError(
                f"{sweep.where('command')}: no {program} here: make install creates it"
            )
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if reason is None:
        return run_with_wandb(sweep, method, extra, args.count, args.project, args.entity)
    print(f"Local sweep ({reason}): {len(trials)} {method} trials of {shown_path(sweep.path)}")
    root = Path(args.root).resolve()
    done = run_local(sweep, trials, root, extra, environ)
    shown_argv = argv if extra else [a for a in argv if a != "--"]
    command = shlex.join(["python", "-m", "experiments.sweep", *shown_argv])
    path = root / "sweeps" / f"{sweep.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(sweep, done, command))
    print(path.read_text() + f"\nwritten to {shown_path(path)}")
    return (
        0
        if len(done) == len(trials) and all(t.outcome in ("ran", "done before") for t in done)
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
