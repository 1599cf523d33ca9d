"""Run a pipeline YAML (:mod:`experiments.pipeline_file`): its steps in order, in one run folder.

``make experiment NAME=<pipeline>`` (= ``python -m experiments run --config experiments/_base.yaml
--config experiments/<pipeline>.yaml [ARGS]``) comes here. The pipeline's run folder is
``<run.root>/<name>/<timestamp>/``; every ``config`` step runs the CLI with ``--run.root`` set to
it, so its run lands in ``<pipeline folder>/<its run name>/<timestamp>/`` and a later step's
``run.init_from: latest:<run name>`` loads that run, never an older one outside the pipeline. The
folder holds::

    pipeline.yaml        the steps as run: their commands, the pipeline's ARGS, its W&B group
    pipeline.log         one line per step start, finish, failure (with the elapsed time)
    logs/<step>.log      what the step printed (also shown on the console)
    done/<step>.yaml     written when the step's process exits 0: the step is finished
    <run name>/<timestamp>/   the run folder of each config step

The ARGS (``--trainer.max_epochs=1``) go to every config step, after the step's own ``args``;
``module`` steps get only their own (``{root}``: the pipeline folder). All steps log to one W&B
group, ``<name>/<timestamp>`` (``WANDB_RUN_GROUP``). A step that fails stops the pipeline: one
line names the step, its command, its log and run folder, and the command that continues.

``--run.resume=true`` (``RESUME=1``) continues the newest pipeline folder of the name: finished
steps are skipped; a config step that has a ``last.ckpt`` continues it (``--run.resume=true``);
any other step starts again. ``--trainer.fast_dev_run=true`` (``make smoke``) runs every step
for one batch of each stage and one epoch in a temporary folder, removed when all steps pass, so
that each ``latest:`` reaches the checkpoint of the step before (a fast_dev_run saves none); the
loggers stay on there (a later step may read a run's metrics.csv), and a step's ``smoke_args``
come last (OLR's Siamese step embeds every image, which its analysis step reads).
``--print_config`` prints what ``pipeline.yaml`` would hold and runs nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from experiments.config_errors import config_files
from experiments.pipeline_file import (
    ROOT_PLACEHOLDER,
    Pipeline,
    PipelineError,
    Step,
    is_pipeline_file,
    load_pipeline,
)
from experiments.run_dirs import (
    free_run_dir,
    new_runs_env,
    newest_run_dir,
    run_name_from_configs,
)
from experiments.tables import EXPERIMENTS, REPO, run_command, shown_path

__all__ = [
    "PIPELINE_FILE",
    "SMOKE_ARGS",
    "PipelineOptions",
    "StepFailed",
    "main",
    "pipeline_config",
    "run_pipeline",
    "step_command",
]

PIPELINE_FILE = "pipeline.yaml"
LOG_FILE = "pipeline.log"
GROUP_ENV = "WANDB_RUN_GROUP"
#: What a smoke run of a pipeline gives every config step instead of fast_dev_run.
SMOKE_ARGS = (
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.limit_predict_batches=1",
)
_OPTIONS = ("--run.root", "--run.name", "--run.resume", "--trainer.fast_dev_run")


class StepFailed(RuntimeError):
    """A step exited non-zero; ``str()`` is the one-line report, ``code`` the step's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class PipelineOptions:
    """What a command line asks of a pipeline: the ``--run.*`` and smoke options it takes for
    itself, and ``args``, the rest, for every config step."""

    root: Path = Path("runs")
    name: str | None = None
    resume: bool = False
    smoke: bool = False
    print_config: bool = False
    args: list[str] = field(default_factory=list)


def parse_options(args: Sequence[str]) -> PipelineOptions:
    """Split a pipeline's command-line arguments (without ``run`` and ``--config``)."""
    options, rest, items = PipelineOptions(), [], list(args)
    while items:
        arg = items.pop(0)
        key, sep, value = arg.partition("=")
        if arg == "--print_config":
            options.print_config = True
            continue
        if key not in _OPTIONS:
            rest.append(arg)
            continue
        if not sep:
            if not items:
                raise PipelineError(f"{arg}: give it a value, e.g. {arg}=true")
            value = items.pop(0)
        if key == "--run.root":
            options.root = Path(value)
        elif key == "--run.name":
            options.name = value
        elif key == "--run.resume":
            options.resume = _flag(key, value)
        else:  # fast_dev_run=N (N batches) is a smoke run too: the steps run one batch
            options.smoke = _flag(key, value)
    if options.smoke:  # the steps' loggers stay on, in the temporary folder: later steps (an
        # analysis) read the stage runs' metrics.csv
        rest = [a for a in rest if a != "--trainer.logger=false"]
    options.args = rest
    return options


def _flag(key: str, value: str) -> bool:
    word = value.lower()
    if word in ("true", "yes") or (word.isdigit() and int(word) > 0):
        return True
    if word in ("false", "no", "0"):
        return False
    raise PipelineError(f"{key}={value}: give true or false")


def pipeline_config(args: Sequence[str]) -> Path | None:
    """The pipeline YAML among the ``--config`` files of a command line, or None.

    Raises:
        PipelineError: when a pipeline comes with another experiment's ``--config`` or with a
            subcommand other than ``run``.
    """
    files = config_files(list(args))
    pipelines = [Path(f) for f in files if is_pipeline_file(f)]
    if not pipelines:
        return None
    (pipeline,) = pipelines[-1:]
    others = [f for f in files if Path(f) != pipeline and Path(f).name != "_base.yaml"]
    if len(pipelines) > 1 or others:
        extra = ", ".join(str(p) for p in [*pipelines[:-1], *map(Path, others)])
        raise PipelineError(
            f"{pipeline} is a pipeline: give it alone (with _base.yaml), not with {extra}"
        )
    if not args or args[0] != "run":
        raise PipelineError(
            f"{pipeline} is a pipeline, run with `python -m experiments run --config "
            f"experiments/_base.yaml --config {pipeline}` (got the subcommand {args[0]!r})"
            if args
            else f"{pipeline} is a pipeline: run it with the subcommand `run`"
        )
    return pipeline


def _without_configs(args: Sequence[str]) -> list[str]:
    out, items = [], list(args)
    while items:
        arg = items.pop(0)
        if arg in ("--config", "-c"):
            items = items[1:]
        elif not arg.startswith(("--config=", "-c=")):
            out.append(arg)
    return out


# ---------------------------------------------------------------------------- commands
def step_command(
    step: Step, parent: Path, args: Sequence[str] = (), smoke: bool = False
) -> list[str]:
    """The command of ``step`` in the pipeline folder ``parent``: a config step's CLI run into
    ``parent`` with ``args`` after its own, or ``python -m <module>`` with its own args; in a
    ``smoke`` run the step's ``smoke_args`` come last."""
    own = [a.replace(ROOT_PLACEHOLDER, str(parent)) for a in step.args]
    last = [a.replace(ROOT_PLACEHOLDER, str(parent)) for a in step.smoke_args] if smoke else []
    if step.config is not None:
        return run_command(step.config, parent, [*own, *args, *last])
    return [sys.executable, "-m", str(step.module), *own, *last]


def shown_command(command: Sequence[str]) -> str:
    """``command`` as one line to copy: ``python`` for this interpreter, paths from the repo."""
    words = ["python" if w == sys.executable else w for w in command]
    words = [w.replace(str(REPO) + os.sep, "") for w in words]
    return shlex.join(words)


def resume_hint(pipeline: Pipeline, name: str, options: PipelineOptions) -> str:
    """The command that continues this pipeline's newest folder."""
    args = " ".join(shlex.quote(a) for a in options.args)
    path = pipeline.path.resolve()
    default_root = options.root.resolve() == REPO / "runs"
    if path.is_relative_to(EXPERIMENTS) and default_root and not options.name:
        make_name = path.relative_to(EXPERIMENTS).with_suffix("").as_posix()
        return f"make experiment NAME={make_name} RESUME=1" + (
            f" ARGS={shlex.quote(args)}" if args else ""
        )
    words = ["python", "-m", "experiments", "run", "--config", "experiments/_base.yaml"]
    words += ["--config", shown_path(path), f"--run.root={shown_path(options.root.resolve())}"]
    words += [f"--run.name={name}"] if options.name else []
    return shlex.join([*words, "--run.resume=true", *options.args])


# ---------------------------------------------------------------------------- running
def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _record(pipeline: Pipeline, name: str, parent: Path, options: PipelineOptions) -> dict:
    return {
        "pipeline": name,
        "file": shown_path(pipeline.path.resolve()),
        "args": list(options.args),
        "wandb_group": f"{name}/{parent.name}",
        "steps": [
            {
                **step.as_dict(),
                "line": step.line,
                **({"run_name": step.run_name} if step.run_name else {}),
                "command": shown_command(step_command(step, parent, options.args)),
            }
            for step in pipeline.steps
        ],
    }


def _check_same(recorded: Mapping[str, Any], wanted: Mapping[str, Any], parent: Path) -> None:
    """A resumed pipeline runs the steps and ARGS it began with."""
    for key, what in (("args", "ARGS"), ("steps", "steps")):
        old = recorded.get(key)
        new = wanted[key]
        if key == "steps":
            old = [{k: s.get(k) for k in ("name", "config", "module", "args")} for s in old or []]
            new = [{k: s.get(k) for k in ("name", "config", "module", "args")} for s in new]
        if old != new:
            raise PipelineError(
                f"Cannot resume {parent}: it ran with other {what} ({old} there, {new} now). "
                "Resume with the same ones, or start a new pipeline run without RESUME=1 "
                "(--run.resume=false)."
            )


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a package above it is missing
        return False


def _check_modules(pipeline: Pipeline) -> None:
    for step in pipeline.steps:
        if step.module is not None and not _module_exists(step.module):
            raise PipelineError(
                f"{pipeline.path}:{step.line}: step '{step.name}': no module {step.module} "
                "to run (`python -m` would fail)"
            )


def _run_process(command: list[str], log: Path, env: Mapping[str, str], out: IO[str]) -> int:
    """Run ``command``, its output into ``log`` and onto ``out``; return its exit code."""
    with log.open("ab") as file:
        process = subprocess.Popen(
            command, cwd=REPO, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                file.write(line)
                file.flush()
                out.write(line.decode(errors="replace"))
            return process.wait()
        except BaseException:  # Ctrl-C: the step gets its own SIGINT; wait for it to stop
            process.terminate()
            process.wait(timeout=60)
            raise


@dataclass
class _Run:
    """One run of a pipeline in its folder ``parent``."""

    pipeline: Pipeline
    name: str
    parent: Path
    options: PipelineOptions
    env: dict[str, str]
    out: IO[str]

    def log(self, text: str) -> None:
        """A line on the console and, with the time, in ``pipeline.log``."""
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        with (self.parent / LOG_FILE).open("a") as file:
            file.write(f"{stamp} {text}\n")
        print(text, file=self.out, flush=True)

    def step(self, index: int, step: Step) -> None:
        """Run ``step`` unless it finished before; raise StepFailed when it fails."""
        count = len(self.pipeline.steps)
        label = f"[{self.name}] step {index}/{count} '{step.name}'"
        done = self.parent / "done" / f"{step.name}.yaml"
        if done.is_file():
            self.log(f"{label}: finished before, skipped")
            return
        checkpoint = "checkpoints/last.ckpt"
        resume = (
            step.run_name is not None
            and newest_run_dir(self.parent, step.run_name, checkpoint) is not None
        )
        smoke = SMOKE_ARGS if self.options.smoke else ()
        args = [*self.options.args, *smoke, *(["--run.resume=true"] if resume else [])]
        command = step_command(step, self.parent, args, self.options.smoke)
        shown, log = shown_command(command), self.parent / "logs" / f"{step.name}.log"
        self.log(f"{label}: {'continuing' if resume else 'start'}: {shown}")
        started = time.monotonic()
        try:
            code = _run_process(command, log, self.env, self.out)
        except KeyboardInterrupt:
            self.log(f"{label}: interrupted after {_elapsed(time.monotonic() - started)}")
            raise
        took = _elapsed(time.monotonic() - started)
        run_dir = (
            newest_run_dir(self.parent, step.run_name, "config.yaml") if step.run_name else None
        )
        if code != 0:
            self.log(f"{label}: failed (exit {code}) after {took}")
            where = f"; run folder {run_dir}" if run_dir else ""
            then = (
                f" (smoke folder {self.options.root} kept)"
                if self.options.smoke
                else f"; continue with: {resume_hint(self.pipeline, self.name, self.options)}"
            )
            raise StepFailed(
                f"pipeline {self.name}: step {index}/{count} '{step.name}' failed (exit {code}, "
                f"after {took}): {shown}; log {log}{where}{then}",
                code,
            )
        record = {"command": shown, "elapsed": took, "run_dir": str(run_dir) if run_dir else None}
        done.write_text(yaml.safe_dump(record, sort_keys=False))
        self.log(f"{label}: finished in {took}")


def _resumed_folder(pipeline: Pipeline, name: str, options: PipelineOptions) -> Path:
    """The newest folder of the pipeline, checked to hold the same steps and ARGS."""
    parent = newest_run_dir(options.root, name, PIPELINE_FILE)
    if parent is None:
        raise PipelineError(
            f"Nothing to resume: no {options.root / name}/<timestamp>/{PIPELINE_FILE}. Start the "
            "pipeline without RESUME=1 (--run.resume=false) first."
        )
    recorded = yaml.safe_load((parent / PIPELINE_FILE).read_text()) or {}
    _check_same(recorded, _record(pipeline, name, parent, options), parent)
    return parent


def run_pipeline(
    pipeline: Pipeline,
    options: PipelineOptions,
    environ: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
) -> Path:
    """Run (or with ``options.resume`` continue) ``pipeline``; return its folder.

    Raises:
        PipelineError: nothing to resume, other steps or ARGS than the resumed folder's, a module
            step whose module does not exist (checked before the first step runs).
        StepFailed: a step exited non-zero (the steps after it did not run).
    """
    out = sys.stdout if out is None else out
    name = options.name or run_name_from_configs([pipeline.path])
    if options.smoke and options.resume:
        raise PipelineError("A smoke run of a pipeline is not resumed: drop --run.resume")
    _check_modules(pipeline)
    if options.print_config:
        record = _record(pipeline, name, free_run_dir(options.root, name), options)
        print(yaml.safe_dump(record, sort_keys=False), end="", file=out)
        return options.root / name
    if options.smoke:  # every step for real, but tiny, in a folder of its own
        options = replace(options, root=Path(tempfile.mkdtemp(prefix="latentlab-pipeline-smoke-")))
    options = replace(options, root=options.root.resolve())  # the steps run in the repository
    if options.resume:
        parent = _resumed_folder(pipeline, name, options)
    else:
        parent = free_run_dir(options.root, name)
        (parent / "logs").mkdir(parents=True)
        record = _record(pipeline, name, parent, options)
        (parent / PIPELINE_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
    (parent / "done").mkdir(exist_ok=True)
    environ = os.environ if environ is None else environ
    env = {**new_runs_env(environ), GROUP_ENV: f"{name}/{parent.name}"}
    run = _Run(pipeline, name, parent, options, env, out)
    started, count = time.monotonic(), len(pipeline.steps)
    run.log(f"pipeline {name}: {'resuming' if options.resume else 'running'} {count} steps")
    for index, step in enumerate(pipeline.steps, start=1):
        run.step(index, step)
    run.log(f"pipeline {name}: finished in {_elapsed(time.monotonic() - started)}: {parent}")
    if options.smoke:
        shutil.rmtree(options.root, ignore_errors=True)
        print(f"Smoke run: removed {options.root}", file=out, flush=True)
    return parent


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``python -m experiments run --config experiments/_base.yaml --config <pipeline>.yaml
    [--run.root=R] [--run.resume=true] [ARGS]`` for a pipeline; returns the exit code (2 for a
    pipeline that cannot run as asked, a failed step's own code otherwise)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        path = pipeline_config(args)
        if path is None:
            raise PipelineError("No pipeline YAML among the --config files")
        options = parse_options(_without_configs(args[1:]))
        run_pipeline(load_pipeline(path), options, environ)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StepFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print(
            "error: pipeline interrupted; RESUME=1 (--run.resume=true) continues it",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
