"""Sweeps: one sweep file, run by W&B's agent or here, trial after trial, without a W&B server.

A sweep file (``experiments/sweeps/<name>.yaml``, :mod:`experiments.sweep_file`) is W&B's sweep
configuration: ``method`` (grid, random or bayes), ``metric`` (``name``, ``goal``),
``parameters`` (values or distributions, in W&B's terms) and ``command``, the trial's command
line with W&B's macros (``${args}``, ...).

With W&B credentials, ``main`` creates the sweep on the server and starts ``wandb agent``.
With ``--local``, or offline (no credentials, or ``WANDB_MODE`` offline or disabled), it draws the
trials itself (every grid point, or ``--count`` random draws) and runs each trial's command line,
built by :func:`experiments.sweep_agent.expand_command` as W&B's agent builds it, one after
another: each trial is
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
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.run_dirs import new_runs_env, run_name_from_configs
from experiments.sweep_agent import cli_args, command_problems, expand_command, program_index
from experiments.sweep_file import (
    Sweep,
    SweepError,
    grid_trials,
    load_sweep,
    local_trials,
    random_trials,
    sweep_path,
)
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

__all__ = ["TrialParser", "check_trials", "main", "offline_reason", "run_local", "trial_runs"]

MAX_FAILURES_IN_A_ROW = 3  # then the sweep stops: the trials most likely fail for one reason


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
        except (ArgumentError, ValueError) as exc:
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
    problems = command_problems(sweep.command, sweep.program, sweep.where("command"))
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
                argv, cwd=REPO, env=new_runs_env(environ), stdout=out, stderr=subprocess.STDOUT
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
    return subprocess.call([*agent, sweep_id], cwd=REPO, env=new_runs_env(os.environ))


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
        program = program[program_index(program)]
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
