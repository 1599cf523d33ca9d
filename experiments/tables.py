"""Results tables: run experiments over seeds through the CLI, tabulate a metric beside the paper.

A table (:class:`Table`) names a grid of cells, each an experiment (``experiments/<name>.yaml``),
the metric to report (a logged key such as ``test/error``) and the seeds. ``run`` does, per cell
and seed, ``python -m experiments run --config experiments/_base.yaml --config <cell>.yaml
--seed_everything=S [--data.init_args.seed=S ...] <overrides>`` in a subprocess (the same runs as
``make experiment``: fit, then test of the best checkpoint, in ``<root>/<name>/<timestamp>/``),
then reads each run folder's ``metrics.csv`` and writes ``<root>/<method>/tables/<table>.md``:
mean ± std over seeds beside the paper's number, read from the cell YAML's ``# Expected:`` header.

It is resumable: a cell and seed whose run folder is complete (its ``config.yaml`` holds the
values of ``_base.yaml``, the cell's YAML, the seeds and the overrides, and its ``metrics.csv``
holds the metric) is not run again, so an interrupted table continues where it stopped. An
incomplete folder (a run that died) is left as it is and the run starts afresh. Runs of different
cells go in parallel (``--jobs``); the seeds of one cell go one after another (the CLI names a run
folder after the second it starts).

    python -m experiments.tables run mil_lstm/table71 --seeds 1 2 3 4 5 --jobs 4
    python -m experiments.tables run mil_lstm/table71 --seeds 1 2 -- --trainer.max_epochs=1
    python -m experiments.tables run mil_lstm/table71 --no-run      # tabulate what exists
    python -m experiments.tables report mil_lstm                    # docs/results/mil_lstm.md

``report`` copies every ``<root>/<method>/tables/*.md`` into ``docs/results/<method>.md`` below
the line :data:`REPORT_MARKER`; what is above it (notes written by hand) is kept.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import math
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from experiments.run_dirs import new_runs_env

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
BASE = EXPERIMENTS / "_base.yaml"
REPORT_MARKER = "<!-- make report: the tables below are copied from runs/<method>/tables/*.md -->"
#: Keys of config.yaml that the CLI fills in per run; they never decide whether a run matches.
_FILLED_BY_CLI = ("run.", "trainer.logger", "trainer.default_root_dir", "checkpoint.dirpath")
_EXPECTED = re.compile(r"^#\s*Expected:\s*(?P<body>.*)$")


@dataclass(frozen=True)
class Table:
    """A grid of experiments and the metric to report for each.

    Args:
        name: ``<method>/<table>``; the markdown goes to ``<root>/<method>/tables/<table>.md``.
        title: Heading of the markdown table (paper and table number).
        metric: Logged key to tabulate (a column of ``metrics.csv``), e.g. ``test/error``.
        rows: Row labels, top to bottom.
        columns: Column labels, left to right.
        cells: ``(row, column) -> experiment name`` (``experiments/<name>.yaml``); a missing
            pair is an empty cell.
        seed_keys: Config keys set to the seed of each run (``seed_everything`` and, for data
            drawn from a seed, e.g. ``data.init_args.seed``).
        digits: Decimals shown.
    """

    name: str
    title: str
    metric: str
    rows: Sequence[str]
    columns: Sequence[str]
    cells: dict[tuple[str, str], str]
    seed_keys: Sequence[str] = ("seed_everything",)
    digits: int = 1

    def __post_init__(self) -> None:
        unknown = [k for k in self.cells if k[0] not in self.rows or k[1] not in self.columns]
        if unknown:
            raise ValueError(f"Table {self.name}: cells outside rows x columns: {unknown}")
        missing = [n for n in self.cells.values() if not (EXPERIMENTS / f"{n}.yaml").is_file()]
        if missing:
            raise FileNotFoundError(f"Table {self.name}: no experiments/<name>.yaml for {missing}")


# ---------------------------------------------------------------------------- YAML and run folders
def expected(name: str) -> tuple[str, str] | None:
    """``(metric, value)`` of the ``# Expected: <metric> = <value>`` header line of an experiment.

    The value is the text up to two spaces or a parenthesis (``4.0 ± 0.4``); ``# Expected: none``
    gives None. A YAML without the line raises ``ValueError``.
    """
    path = EXPERIMENTS / f"{name}.yaml"
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = _EXPECTED.match(line)
        if match is None:
            continue
        body = re.split(r"\s{2,}|\(", match["body"].strip())[0].strip()
        if body.lower() == "none":
            return None
        metric, sep, value = body.partition("=")
        if not sep or not metric.strip() or not value.strip():
            raise ValueError(f"{path}: write '# Expected: <metric> = <value>', got {line!r}")
        return metric.strip(), value.strip()
    raise ValueError(f"{path}: no '# Expected:' line in the header comment")


def parse_overrides(args: Iterable[str]) -> dict[str, Any]:
    """``["--a.b=1", "--c=x"]`` -> ``{"a.b": 1, "c": "x"}`` (values read as YAML)."""
    out = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not key.startswith("--") or not sep:
            raise ValueError(f"Overrides are --<dotted.key>=<value>, got {arg!r}")
        out[key[2:]] = yaml.safe_load(value)
    return out


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists -> ``{"a.b.0.c": leaf}``."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def merged_values(sources: Iterable[Path | dict[str, Any]]) -> dict[str, Any]:
    """Flat values of config files (paths) and overrides (``{dotted.key: value}``), in the order
    the CLI applies them: a file's values update the ones before; an override of a key replaces
    that key and everything below it."""
    values: dict[str, Any] = {}
    for source in sources:
        if isinstance(source, Path):
            values.update(flatten(yaml.safe_load(source.read_text()) or {}))
            continue
        for key, value in source.items():
            values = {k: v for k, v in values.items() if not k.startswith(key + ".")}
            values.update(flatten(value, key))
    return values


def recorded_values(values: dict[str, Any]) -> dict[str, Any]:
    """The ``merged_values`` that decide whether a run folder matches: without None values and
    without the keys the CLI fills in per run."""
    return {k: v for k, v in values.items() if v is not None and not k.startswith(_FILLED_BY_CLI)}


def wanted_config(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Flat values a run of ``name`` with ``overrides`` records in its config.yaml."""
    return recorded_values(merged_values([BASE, EXPERIMENTS / f"{name}.yaml", overrides]))


def same_value(a: Any, b: Any) -> bool:
    """Equal, numbers up to rounding; a number written as text (``"1e-05"``, which YAML reads as a
    string) equals that number."""
    numbers = (int, float)
    a, b = _as_number(a), _as_number(b)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def read_metric(run_dir: Path, metric: str) -> float | None:
    """The last logged value of ``metric`` in ``run_dir/metrics.csv`` (None when absent)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        values = [row[metric] for row in csv.DictReader(f) if row.get(metric)]
    return float(values[-1]) if values else None


def find_run(runs: Path, wanted: dict[str, Any], metric: str | None) -> Path | None:
    """The newest ``runs/<timestamp>/`` whose config.yaml holds the ``wanted`` flat values and
    whose metrics.csv holds ``metric`` (with ``metric`` None: whatever it logged)."""
    for run_dir in sorted(runs.glob("*/"), reverse=True):
        config_file = run_dir / "config.yaml"
        if not config_file.is_file():
            continue
        if metric is not None and read_metric(run_dir, metric) is None:
            continue
        recorded = flatten(yaml.safe_load(config_file.read_text()) or {})
        if all(k in recorded and same_value(recorded[k], v) for k, v in wanted.items()):
            return run_dir
    return None


def complete_run(root: Path, name: str, overrides: dict[str, Any], metric: str) -> Path | None:
    """The newest ``root/name/<timestamp>/`` made with these values that logged ``metric``."""
    return find_run(root / name, wanted_config(name, overrides), metric)


# ---------------------------------------------------------------------------- running
def seed_args(table: Table, seed: int) -> list[str]:
    return [f"--{key}={seed}" for key in table.seed_keys]


def run_command(name: str, root: Path, args: Sequence[str]) -> list[str]:
    """The ``python -m experiments run`` command line of one run."""
    configs = ["--config", str(BASE), "--config", str(EXPERIMENTS / f"{name}.yaml")]
    return [sys.executable, "-m", "experiments", "run", *configs, f"--run.root={root}", *args]


def _run_seeds(name: str, jobs: list[tuple[int, list[str]]], root: Path, log_dir: Path) -> list:
    """Run one experiment's seeds in turn, each choosing its own run folder; return
    ``(name, seed, log)`` of the failed ones."""
    failed = []
    for seed, args in jobs:
        log = log_dir / f"{name.replace('/', '__')}_seed{seed}.log"
        print(f"run {name} seed {seed} (log {log})", flush=True)
        with log.open("w") as out:
            code = subprocess.call(
                run_command(name, root, args),
                cwd=REPO,
                env=new_runs_env(os.environ),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if code != 0:
            failed.append((name, seed, log))
    return failed


def run_table(
    table: Table,
    seeds: Sequence[int],
    root: Path,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    execute: bool = True,
) -> dict[tuple[str, str], dict[int, Path]]:
    """Run the missing (cell, seed) pairs; return the complete run folder of each pair found."""
    extra = list(overrides)

    def args_of(seed: int) -> list[str]:
        return seed_args(table, seed) + extra

    def complete(name: str, seed: int) -> Path | None:
        return complete_run(root, name, parse_overrides(args_of(seed)), table.metric)

    done = {
        (name, seed): complete(name, seed)
        for name in dict.fromkeys(table.cells.values())
        for seed in seeds
    }
    pending: dict[str, list[tuple[int, list[str]]]] = {}
    for (name, seed), run_dir in done.items():
        if run_dir is None:
            pending.setdefault(name, []).append((seed, args_of(seed)))
    if execute and pending:
        log_dir = root / table.name.split("/")[0] / "tables" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = pool.map(lambda item: _run_seeds(*item, root, log_dir), pending.items())
            failed = [f for group in results for f in group]
        if failed:
            lines = "\n".join(f"  {n} seed {s}: see {log}" for n, s, log in failed)
            raise RuntimeError(f"{len(failed)} run(s) failed:\n{lines}")
        for name, runs in pending.items():  # only what ran is looked up again
            for seed, _ in runs:
                done[(name, seed)] = complete(name, seed)
    found: dict[tuple[str, str], dict[int, Path]] = {}
    for cell, name in table.cells.items():
        for seed in seeds:
            if done[(name, seed)] is not None:
                found.setdefault(cell, {})[seed] = done[(name, seed)]
    return found


# ---------------------------------------------------------------------------- tabulating
def summarize(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, population std, n) of the values of one cell."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / n), n


def markdown(
    table: Table,
    runs: dict[tuple[str, str], dict[int, Path]],
    seeds: Sequence[int],
    command: str,
) -> str:
    """The table as markdown: per cell ``ours mean ± std (n) / paper``, then the run folders."""
    d = table.digits
    lines = [
        f"## {table.title}",
        "",
        f"`{table.metric}`: ours, mean ± std over seeds (number of seeds) / the paper's number "
        "(each YAML's `# Expected:` line). Seeds: " + " ".join(map(str, seeds)) + ".",
        "",
        f"Command: `{command}`",
        "",
        "| | " + " | ".join(table.columns) + " |",
        "|---" * (len(table.columns) + 1) + "|",
    ]
    for row in table.rows:
        cells = []
        for column in table.columns:
            name = table.cells.get((row, column))
            if name is None:
                cells.append("")
                continue
            paper = expected(name)
            if paper is not None and paper[0] != table.metric:
                raise ValueError(
                    f"{name}.yaml expects {paper[0]}, the table reports {table.metric}"
                )
            values = [read_metric(p, table.metric) for p in runs.get((row, column), {}).values()]
            mean, std, n = summarize(values) if values else (math.nan, math.nan, 0)
            ours = f"{mean:.{d}f} ± {std:.{d}f} ({n})" if n else "–"
            cells.append(f"{ours} / {paper[1] if paper else '–'}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "Run folders:", ""]
    for (row, column), by_seed in runs.items():
        folders = ", ".join(f"seed {s}: `{shown_path(p)}`" for s, p in sorted(by_seed.items()))
        lines.append(f"- {row}, {column}: {folders}")
    return "\n".join(lines) + "\n"


def shown_path(path: Path) -> str:
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def table_path(root: Path, table: Table) -> Path:
    method, _, short = table.name.partition("/")
    return root / method / "tables" / f"{short}.md"


def load_table(name: str) -> Table:
    """``TABLE`` of the module ``experiments/<name>.py`` (``mil_lstm/table71``)."""
    module = importlib.import_module("experiments." + name.replace("/", "."))
    table = getattr(module, "TABLE", None)
    if not isinstance(table, Table):
        raise ValueError(f"experiments/{name}.py defines no TABLE = tables.Table(...)")
    return table


def write_report(method: str, root: Path, docs: Path = REPO / "docs" / "results") -> Path:
    """Copy ``<root>/<method>/tables/*.md`` below :data:`REPORT_MARKER` in ``<docs>/<method>.md``.

    The part of the results file above the marker (notes written by hand) is kept.
    """
    tables = sorted((root / method / "tables").glob("*.md"))
    if not tables:
        raise FileNotFoundError(
            f"No {root / method / 'tables'}/*.md: run a table first "
            f"(python -m experiments.tables run {method}/<table>)"
        )
    path = docs / f"{method}.md"
    text = path.read_text() if path.is_file() else f"# Results: {method}\n\n"
    head = text.split(REPORT_MARKER)[0].rstrip("\n")
    body = "\n".join(t.read_text().rstrip("\n") + "\n" for t in tables)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}\n\n{REPORT_MARKER}\n\n{body}")
    return path


# ---------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the missing cells and seeds, write the table")
    run.add_argument("table", help="<method>/<table>: experiments/<method>/<table>.py's TABLE")
    run.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    run.add_argument("--jobs", type=int, default=1, help="experiments run in parallel")
    run.add_argument("--root", default="runs", help="run folders (the CLI's --run.root)")
    run.add_argument("--no-run", action="store_true", help="tabulate existing run folders only")
    report = commands.add_parser("report", help="copy a method's tables to docs/results/")
    report.add_argument("method")
    report.add_argument("--root", default="runs")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    if args.command == "report":
        path = write_report(args.method, root)
        print(f"wrote {path}")
        return path
    table = load_table(args.table)
    runs = run_table(table, args.seeds, root, overrides, args.jobs, execute=not args.no_run)
    seeds = " ".join(map(str, args.seeds))
    command = f"python -m experiments.tables run {args.table} --seeds {seeds}"
    if overrides:
        command += " -- " + shlex.join(overrides)
    path = table_path(root, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(table, runs, args.seeds, command))
    print(path.read_text())
    return path


if __name__ == "__main__":  # run the imported module, whose Table the table modules use
    from experiments.tables import main as imported_main

    imported_main()
