"""Pipeline YAMLs: an experiment made of steps run one after the other, read and checked.

A pipeline YAML is an experiment YAML (``experiments/<method>/<name>.yaml``, with the usual header
comment) whose only top-level key is ``pipeline:``, a list of steps::

    pipeline:
      - {name: teacher, config: olr/synthetic_teacher}
      - {name: siamese, config: olr/synthetic_siamese, args: ["--trainer.max_epochs=3"]}
      - {name: analysis, module: experiments.olr.analyze, args: ["--root", "{root}"]}

A ``config`` step is a run of the CLI on ``experiments/<config>.yaml`` (``python -m experiments
run --config experiments/_base.yaml --config experiments/<config>.yaml <args>``); a ``module``
step is ``python -m <module> <args>``. In ``args``, ``{root}`` stands for the pipeline's run folder.
:mod:`experiments.pipeline` runs them.

:func:`load_pipeline` refuses, with one :class:`PipelineError` that names the file and line, a
step with an unknown key, without a name or with a name used before, with both or neither of
``config`` and ``module``, or naming an experiment YAML that does not exist; two steps whose
runs would share a run name (``latest:<run name>`` could not tell them apart); and a step whose
``run.init_from`` names ``latest:<run name>`` of no earlier step (a step's runs go into the
pipeline's folder, so that is the only place ``latest:`` looks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiments.config_errors import did_you_mean
from experiments.init_from import RUN_REFERENCES
from experiments.listing import closest, experiment_names

__all__ = [
    "PIPELINE_KEY",
    "ROOT_PLACEHOLDER",
    "STEP_KEYS",
    "Pipeline",
    "PipelineError",
    "Step",
    "is_pipeline_file",
    "latest_references",
    "load_pipeline",
]

EXPERIMENTS = Path(__file__).resolve().parent
PIPELINE_KEY = "pipeline"
ROOT_PLACEHOLDER = "{root}"  # in a step's args: the pipeline's run folder
STEP_KEYS = ("name", "config", "module", "args", "smoke_args")
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a file name: <name>.log, <name>.done
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PipelineError(ValueError):
    """A pipeline YAML that cannot run; ``str()`` names the file and line first."""


@dataclass(frozen=True)
class Step:
    """One step of a pipeline.

    Args:
        name: Its name in the pipeline (its log is ``logs/<name>.log``).
        config: ``<method>/<name>`` of the experiment YAML the CLI runs, or None.
        module: The module ``python -m`` runs, or None (exactly one of the two is set).
        args: Its own arguments (``{root}``: the pipeline's run folder).
        smoke_args: Arguments added after everything else in a smoke run (``make smoke``), e.g.
            a full predict where a later step reads every prediction.
        line: Its line in the pipeline YAML.
    """

    name: str
    config: str | None = None
    module: str | None = None
    args: tuple[str, ...] = ()
    smoke_args: tuple[str, ...] = ()
    line: int = 0

    @property
    def run_name(self) -> str | None:
        """The run name of a config step's run (``--run.name`` in its args, else its config)."""
        if self.config is None:
            return None
        named = [a.partition("=")[2] for a in self.args if a.startswith("--run.name=")]
        return named[-1] if named else self.config

    def as_dict(self) -> dict[str, object]:
        """The step as the YAML writes it (``pipeline.yaml`` of a run records this)."""
        kind = {"config": self.config} if self.config is not None else {"module": self.module}
        smoke = {"smoke_args": list(self.smoke_args)} if self.smoke_args else {}
        return {"name": self.name, **kind, "args": list(self.args), **smoke}


@dataclass(frozen=True)
class Pipeline:
    """A pipeline YAML read and checked: its file and its steps in order."""

    path: Path
    steps: tuple[Step, ...] = field(default_factory=tuple)


def _compose(path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except OSError as error:
        raise PipelineError(f"{path}: cannot read this pipeline file ({error.strerror})") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PipelineError(f"{where}: invalid YAML: {error.problem}") from None


def _top_level(path: Path) -> yaml.MappingNode | None:
    node = _compose(path)
    return node if isinstance(node, yaml.MappingNode) else None


def is_pipeline_file(path: str | Path) -> bool:
    """True when ``path`` is a YAML file whose top level holds ``pipeline:``."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        node = _top_level(path)
    except PipelineError:
        return False  # the CLI reports invalid YAML of a --config file
    return node is not None and any(key.value == PIPELINE_KEY for key, _ in node.value)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _strings(node: yaml.Node, path: Path, what: str) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode) or not all(
        isinstance(item, yaml.ScalarNode) for item in node.value
    ):
        raise PipelineError(f"{path}:{_line(node)}: {what}: args must be a list of strings")
    return tuple(str(item.value) for item in node.value)


def _step(node: yaml.Node, index: int, path: Path, experiments: Path) -> Step:
    where = f"{path}:{_line(node)}: step {index + 1}"
    if not isinstance(node, yaml.MappingNode):
        raise PipelineError(f"{where}: a step is a mapping {{name: ..., config: ...}}")
    values: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if key.value not in STEP_KEYS:
            hint = did_you_mean(str(key.value), list(STEP_KEYS))
            raise PipelineError(
                f"{path}:{_line(key)}: step {index + 1}: unknown key `{key.value}`{hint} "
                f"(a step has {', '.join(STEP_KEYS)})"
            )
        values[key.value] = value
    name_node = values.get("name")
    name = str(name_node.value) if isinstance(name_node, yaml.ScalarNode) else ""
    if not _STEP_NAME.match(name):
        raise PipelineError(
            f"{where}: give it a `name:` of letters, digits, `_`, `.` or `-` (got {name!r})"
        )
    where = f"{path}:{_line(node)}: step '{name}'"
    kinds = [k for k in ("config", "module") if k in values]
    if len(kinds) != 1:
        got = "both" if kinds else "neither"
        raise PipelineError(f"{where}: give exactly one of `config:` and `module:`, not {got}")
    kind, value = kinds[0], values[kinds[0]]
    text = str(value.value) if isinstance(value, yaml.ScalarNode) else ""
    args = _strings(values["args"], path, f"step '{name}'") if "args" in values else ()
    smoke = _strings(values["smoke_args"], path, f"step '{name}'") if "smoke_args" in values else ()
    if kind == "module":
        if not _MODULE.match(text):
            raise PipelineError(f"{path}:{_line(value)}: step '{name}': {text!r} is no module")
        return Step(name, module=text, args=args, smoke_args=smoke, line=_line(node))
    if not (experiments / f"{text}.yaml").is_file():
        close = closest(text, experiment_names(experiments))
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise PipelineError(
            f"{path}:{_line(value)}: step '{name}': no experiments/{text}.yaml{hint} "
            "(`make list` lists the experiments)"
        )
    if is_pipeline_file(experiments / f"{text}.yaml"):
        raise PipelineError(
            f"{path}:{_line(value)}: step '{name}': experiments/{text}.yaml is a pipeline; "
            "a step runs one experiment"
        )
    return Step(name, config=text, args=args, smoke_args=smoke, line=_line(node))


def latest_references(step: Step, experiments: Path = EXPERIMENTS) -> list[str]:
    """The run names that ``step`` loads with ``run.init_from: latest:<run name>`` or
    ``best:<run name>`` (its args' ``--run.init_from=`` over its experiment YAML's)."""
    given = [a.partition("=")[2] for a in step.args if a.startswith("--run.init_from=")]
    if step.config is None:
        return []
    if given:
        value: object = yaml.safe_load(given[-1])
    else:
        config = yaml.safe_load((experiments / f"{step.config}.yaml").read_text()) or {}
        value = (config.get("run") or {}).get("init_from")
    parts = value if isinstance(value, list) else [value]
    checkpoints = [p.get("checkpoint") if isinstance(p, dict) else p for p in parts]
    return [
        c.partition(":")[2]
        for c in checkpoints
        if isinstance(c, str) and c.startswith(RUN_REFERENCES)
    ]


def _check_references(path: Path, steps: list[Step], experiments: Path) -> None:
    """Each ``latest:`` of a step names the run of an earlier step: the steps run in the
    pipeline's folder, where only those runs are."""
    for index, step in enumerate(steps):
        earlier = [s.run_name for s in steps[:index] if s.run_name]
        for name in latest_references(step, experiments):
            if name not in earlier:
                runs = ", ".join(earlier) or "none"
                raise PipelineError(
                    f"{path}:{step.line}: step '{step.name}': run.init_from loads run {name}, no "
                    f"earlier step's run (earlier runs: {runs}); a step loads only runs of its "
                    "pipeline: add a step that runs it before, or give a checkpoint file"
                )


def load_pipeline(path: str | Path, experiments: Path = EXPERIMENTS) -> Pipeline:
    """Read and check the pipeline YAML ``path`` (its ``config`` steps name files under
    ``experiments``).

    Raises:
        PipelineError: ``<file>:<line>: ...`` for the first problem found.
    """
    path = Path(path)
    node = _top_level(path)
    if node is None or not any(key.value == PIPELINE_KEY for key, _ in node.value):
        raise PipelineError(f"{path}: no top-level `{PIPELINE_KEY}:` list of steps")
    for key, value in node.value:
        if key.value != PIPELINE_KEY:
            raise PipelineError(
                f"{path}:{_line(key)}: unknown top-level key `{key.value}` in a pipeline (only "
                f"`{PIPELINE_KEY}:`; settings of a step go into its `args:`)"
            )
        steps_node = value
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise PipelineError(f"{path}:{_line(steps_node)}: `{PIPELINE_KEY}:` must list steps")
    steps: list[Step] = []
    for index, item in enumerate(steps_node.value):
        step = _step(item, index, path, experiments)
        for before in steps:
            if before.name == step.name:
                raise PipelineError(
                    f"{path}:{step.line}: step '{step.name}': the name of the step on line "
                    f"{before.line}; step names are unique"
                )
            if step.run_name is not None and before.run_name == step.run_name:
                raise PipelineError(
                    f"{path}:{step.line}: step '{step.name}': runs {step.run_name}, as step "
                    f"'{before.name}' on line {before.line} does; give one of them "
                    "`--run.name=<method>/<name>` in its args"
                )
        steps.append(step)
    _check_references(path, steps, experiments)
    return Pipeline(path=path, steps=tuple(steps))
