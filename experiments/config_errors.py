"""Config errors in one short line that names the file and line (or the flag) and the close match.

``python -m experiments`` (:mod:`experiments.__main__`) checks each ``--config`` file before
parsing (:func:`check_config_files`: missing, or not valid YAML) and turns jsonargparse's refusal
of the configuration into one line (:func:`explain`), without the usage dump::

    error: my.yaml:19: `model.init_args.lrr`: FaceAttributeClassifier has no argument `lrr`; did
        you mean `lr`?
    error: my.yaml:42: `trainer.max_epoch`: unknown key `max_epoch` in `trainer`; did you mean
        `max_epochs`?
    error: --trainer.max_epoch=1: unknown option (options are not abbreviated); did you mean
        `--trainer.max_epochs`?
    error: my.yaml:4:1: invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing
        a flow sequence that starts at line 3)

The parser raises instead of exiting and takes no option by its prefix (``exit_on_error=False``,
``allow_abbrev=False`` in :class:`experiments.cli.LatentLabCLI`'s parser kwargs; the subcommands'
parsers inherit both). A key is found
in the files and flags in their command-line order; the last one that sets it is named, as the
last one wins. Close matches come from the keys valid at that place: the ``__init__`` arguments of
the class named by ``class_path``, or the options ``--help`` lists.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import io
import re
from argparse import ArgumentError
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

CONFIG_FLAGS = ("--config", "-c")


class ConfigError(Exception):
    """A configuration the command refuses; ``str()`` is the whole message."""


def config_files(args: list[str]) -> list[str]:
    """The ``--config`` / ``-c`` files in ``args``, in order."""
    files = []
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if name in CONFIG_FLAGS:
            files.append(value if sep else (args[i + 1] if i + 1 < len(args) else ""))
    return files


def _compose(path: str) -> yaml.Node | None:
    """The YAML node tree of ``path``; ConfigError naming file, line and column when invalid."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read this --config file ({error.strerror})") from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = error.problem or "not valid YAML"
        if error.context and error.context_mark:
            problem += f" ({error.context} that starts at line {error.context_mark.line + 1})"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


def check_config_files(args: list[str]) -> None:
    """Raise ConfigError for a ``--config`` file that cannot be read or is not valid YAML."""
    for path in config_files(args):
        _compose(path)


def _key_nodes(node: yaml.Node | None, prefix: str = "") -> Iterator[tuple[str, yaml.Node]]:
    """``(dotted path, key node)`` of every mapping key under ``node``; list items as ``[i]``."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}.{key.value}" if prefix else str(key.value)
            yield path, key
            yield from _key_nodes(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            yield from _key_nodes(value, f"{prefix}[{i}]")


def _plain(path: str) -> str:
    """``path`` without ``init_args`` and list indices: the form jsonargparse's errors use."""
    path = re.sub(r"\[\d+\]", "", path)
    return ".".join(part for part in path.split(".") if part != "init_args")


def locate(key: str, args: list[str]) -> tuple[str, str] | None:
    """``(where, path)`` of the last setting of ``key`` (a path as :func:`_plain` writes it) in
    ``args``: ``("file:line", path in that file)`` or ``("--flag=value", path)``; None if none."""
    found = None
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if name in CONFIG_FLAGS:
            path = value if sep else (args[i + 1] if i + 1 < len(args) else "")
            in_file = (
                (f"{path}:{node.start_mark.line + 1}", full)
                for full, node in _key_nodes(_compose(path))
                if _plain(full) == key
            )  # the first: `a` rather than the `a.init_args` below it
            found = next(in_file, found)
        elif name.startswith("--") and _plain(name[2:]) == key:
            given = arg if sep or i + 1 >= len(args) else f"{arg} {args[i + 1]}"
            found = (given, name[2:])
    return found


def did_you_mean(word: str, candidates: list[str], prefix: str = "") -> str:
    """``"; did you mean `x`?"`` for the closest of ``candidates`` to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean `{prefix}{close[0]}`?" if close else ""


def init_arguments(class_path: str) -> list[str]:
    """The ``__init__`` argument names of ``class_path`` and, where it takes ``**kwargs``, of its
    base classes (empty if it does not import)."""
    try:
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls) if inspect.isclass(cls) else [cls]:
        init = klass.__init__ if inspect.isclass(klass) else klass
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            break
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return [n for n in names if n != "self"]


def help_options(help_text: str) -> list[str]:
    """The option names (without ``--``) that a ``--help`` text lists."""
    return re.findall(r"(?<![\w-])--([A-Za-z_][\w.]*)", help_text)


def _where(key: str, args: list[str]) -> str:
    """``"file:line: `key as written there`"``, ``"--flag=value"`` or ``"`key`"``: where ``key``
    (as :func:`_plain` writes it) is set last in ``args``."""
    found = locate(key, args)
    if found is None:
        return f"`{key}`"
    where, shown = found
    return where if where.startswith("-") else f"{where}: `{shown}`"


def _unknown_key(key: str, args: list[str], options: list[str]) -> str:
    """A key (``trainer.max_epoch``, ``trainerr.x``) that no option starts with."""
    parts = key.split(".")
    known = 0  # how many leading parts name a group of options
    while known < len(parts) - 1 and any(
        o.startswith(".".join(parts[: known + 1]) + ".") for o in options
    ):
        known += 1
    group, word = ".".join(parts[:known]), parts[known]
    inside = [o.removeprefix(f"{group}.") for o in options if o.startswith(f"{group}.")]
    candidates = [o.split(".")[0] for o in (inside if group else options)]
    place = f" in `{group}`" if group else ""
    return f"{_where(key, args)}: unknown key `{word}`{place}" + did_you_mean(word, candidates)


def _unknown_flags(flags: list[str], options: list[str]) -> str:
    lines = []
    for flag in flags:
        name = flag.partition("=")[0].lstrip("-")
        whole = " (options are not abbreviated)" if any(o.startswith(name) for o in options) else ""
        lines.append(f"{flag}: unknown option{whole}" + did_you_mean(name, options, prefix="--"))
    return "\n".join(lines)


def _class_problem(message: str, args: list[str]) -> str | None:
    """A ``Parser key "k": ... class_path 'C': Option 'o' is not accepted`` chain (and the like)."""
    top = re.match(r'Parser key "([\w.]+)"', message)
    if top is None:
        return None
    keys, class_path = [top.group(1)], None
    for line in message.splitlines()[1:]:
        text = line.strip().removeprefix("- ")
        if nested := re.match(r'Parser key "([\w.]+)"', text):
            keys.append(nested.group(1))
        elif given := re.match(r"Problem with given class_path '([\w.]+)'", text):
            class_path = given.group(1)
        elif option := re.match(r"Option '([\w.]+)' is not accepted", text):
            word = option.group(1).split(".")[0]
            where = _where(_plain(".".join([*keys, word])), args)
            name = class_path.rpartition(".")[2] if class_path else "this class"
            hint = did_you_mean(word, init_arguments(class_path or ""))
            return f"{where}: {name} has no argument `{word}`{hint}"
        elif missing := re.match(r"module '([\w.]+)' has no attribute '(\w+)'", text):
            module, name = missing.groups()
            where = _where(_plain(".".join([*keys, "class_path"])), args)
            found = vars(importlib.import_module(module)).items()
            classes = [n for n, v in found if inspect.isclass(v)]
            hint = did_you_mean(name, classes, prefix=f"{module}.")
            return f"{where}: no class `{name}` in {module}{hint}"
        elif text.startswith(("Expected a", "Not a valid", "Given value")):
            break
    where = _where(_plain(".".join(keys)), args)
    expected = re.findall(r"Expected a <class '([\w.]+)'>", message)
    value = re.search(r"^\s*Given value: (.*)$", message, re.MULTILINE)
    if expected and value:
        kinds = " or ".join(dict.fromkeys("None" if e == "NoneType" else e for e in expected))
        return f"{where}: must be {kinds}, not {value.group(1)!r}"
    lines = message.splitlines()[1:]
    reasons = [line.strip() for line in lines if line.strip() and "Given value" not in line]
    return f"{where}: " + "; ".join(reasons[-4:])


def explain(
    error: ConfigError | ArgumentError, args: list[str], options: Callable[[], list[str]]
) -> str:
    """One short message for a refusal of ``args`` (file:line or flag first).

    Args:
        error: What :func:`check_config_files` or the parser raised.
        args: The command line it parsed (``--config`` files are read again to find lines).
        options: The option names the parser takes (called only when an option is unknown).
    """
    message = str(error)
    if isinstance(error, ConfigError):
        return message
    if flags := re.match(r"unrecognized arguments: (.*)", message):
        unknown = [a for a in flags.group(1).split() if a.startswith("-")]
        if unknown:
            return _unknown_flags(unknown, options())
    group = re.match(r"(?:Group|Subcommand) '([\w.]+)' does not accept option '([\w.]+)'", message)
    if group:
        outer, key = group.groups()
        key = key if message.startswith("Subcommand") else f"{outer}.{key}"
        return _unknown_key(key, args, options())
    if option := re.match(r"Option '([\w.]+)' is not accepted", message):
        return _unknown_key(option.group(1), args, options())
    if (explained := _class_problem(message, args)) is not None:
        return explained
    lines = [line for line in message.splitlines() if "Given value" not in line]
    return "\n".join(lines[:6]) if lines else repr(error)


def captured_help(show_help: Callable[[], object]) -> str:
    """What ``show_help`` (a parse of ``--help``, which prints and exits) writes to stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        show_help()
    return out.getvalue()
