"""``python -m experiments fit|validate|test|predict|run --config ...``.

``run`` is ``fit --run.evaluate=true``: fit, then test the best (or last) checkpoint, then predict
when the datamodule has predict data and the model a ``predict_step``, all in the same run folder;
for an experiment that trains nothing (``run.predict_only: true``) it is ``predict``, with the
weights ``run.init_from`` loads. This is what ``make experiment`` calls. A ``--config`` that is a
pipeline YAML (top-level ``pipeline:``) runs its steps instead, one CLI run or module after the
other in one folder (:mod:`experiments.pipeline`).

A configuration the parser refuses ends the command with one line on stderr that names the file
and line (or the flag) and the close match (:mod:`experiments.config_errors`), and exit code 2; so
does a run that cannot start as asked (:class:`experiments.errors.SetupError`, e.g. a resume with
changed settings) or whose data is missing or malformed (``datamodules.formats.errors``), or
whose pretrained file is missing or has the wrong checksum (``components/pretrained.py``), with
its message and no traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from argparse import ArgumentError

# Before PyTorch loads OpenMP: idle intra-op threads sleep instead of spinning on cores that other
# processes (or this run's loader workers) need (experiments/cores.py); a value set by the
# user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from datamodules.formats.errors import (  # noqa: E402
    DatasetNotFoundError,
    FormatError,
    SettingError,
)
from experiments import pipeline  # noqa: E402
from experiments.cli import LatentLabCLI, predict_only  # noqa: E402
from experiments.config_errors import (  # noqa: E402
    ConfigError,
    captured_help,
    check_config_files,
    config_files,
    explain,
    help_options,
)
from experiments.errors import SetupError  # noqa: E402
from experiments.pipeline_file import is_pipeline_file  # noqa: E402
from lightning_modules.components.pretrained import (  # noqa: E402
    ChecksumError,
    WeightsNotFoundError,
)

#: Errors whose message says what to do: reported as one line, without a traceback.
ONE_MESSAGE = (
    SetupError,
    SettingError,
    DatasetNotFoundError,
    FormatError,
    WeightsNotFoundError,
    ChecksumError,
)


def one_message_cause(error: BaseException | None) -> BaseException | None:
    """The first ``ONE_MESSAGE`` error in the chain of ``error`` (jsonargparse wraps what a class
    raises while the CLI instantiates it, e.g. a module whose pretrained file is missing)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ONE_MESSAGE):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(is_pipeline_file(path) for path in config_files(args)):
        sys.exit(pipeline.main(args))  # a pipeline YAML: its steps run the CLI, each in turn
    if args and args[0] == "run":  # a stage that trains nothing predicts instead
        first = ["predict"] if predict_only(args) else ["fit", "--run.evaluate=true"]
        args = [*first, *args[1:]]
    # we pass sys.argv on ourselves (rewritten for `run`); Lightning would warn about both being set
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    subcommand = args[:1] if args and not args[0].startswith("-") else []

    def options() -> list[str]:  # what `--help` lists, for "did you mean"
        return help_options(captured_help(lambda: LatentLabCLI(args=[*subcommand, "--help"])))

    try:
        check_config_files(args)
        LatentLabCLI(args=args)
    except (ConfigError, ArgumentError) as error:
        print(f"error: {explain(error, args, options)}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        # a run that cannot start as asked, data or pretrained weights missing or malformed: the
        # message names the file and says what to do; a traceback would only push it off the
        # screen
        cause = one_message_cause(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
