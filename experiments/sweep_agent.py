"""W&B's sweep agent's command line for a trial: the macros of a sweep file's ``command``
expanded as the agent expands them, and what in a ``command`` the agent would not run as meant.

The agent replaces ``${envvar:NAME}`` anywhere in an item, then every item that is a whole macro
(``${args}``, ``${interpreter}``, ...) by the macro's items; nothing else. The local sweep runner
(:mod:`experiments.sweep`) builds each trial's command line with the same function.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.tables import REPO

__all__ = [
    "DEFAULT_COMMAND",
    "agent_args",
    "cli_args",
    "command_problems",
    "expand_command",
    "program_index",
]

#: What W&B's agent runs when a sweep file has no ``command``.
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
SUBCOMMANDS = ("fit", "validate", "test", "predict", "run")
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
_MACRO = re.compile(r"\$\{[^}]*\}")


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


def program_index(argv: Sequence[str]) -> int:
    """Index of the program a command line runs: after ``/usr/bin/env`` and its ``NAME=value``
    items."""
    i = 0
    if argv and Path(argv[0]).name == "env":
        i = 1
        while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-"):
            i += 1
    return i


def command_problems(command: Sequence[Any], program: str | None, where: str) -> list[str]:
    """What in a sweep's ``command`` W&B's agent would not run as meant (empty when fine): a
    macro inside a longer item (never expanded), a macro the agent does not know (dropped), and a
    program looked up on PATH (the project's Python only while its venv is active). Each problem
    starts with ``where`` (the command's file and line)."""
    problems = []
    known = _macros({}, program, Path("file.json"))
    for item in map(str, command):
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
    argv = expand_command(command, {}, program, {})
    runs = argv[program_index(argv)] if program_index(argv) < len(argv) else ""
    if "/" not in runs:
        problems.append(
            f"{where}: the trial runs {runs or 'nothing'!r} found on PATH; write "
            ".venv/bin/python, the project's Python (${interpreter} is 'python' from PATH, the "
            "project's only while its venv is active)"
        )
    return problems


def cli_args(argv: Sequence[str]) -> list[str]:
    """The experiments CLI's arguments in a trial's command line, from its subcommand on.

    The command line must run ``<python> -m experiments <subcommand> ...`` or ``<python>
    experiments/__main__.py <subcommand> ...``; else ``ValueError``.
    """
    start = program_index(argv) + 1
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
        raise ValueError(
            "the command does not run the experiments CLI (.venv/bin/python -m experiments "
            f"run --config ...): {shlex.join(argv)}"
        )
    return rest
