"""``python -m experiments fit|validate|test|predict|run --config ...``.

``run`` is ``fit --run.evaluate=true``: fit, then test the best (or last) checkpoint, then predict
when the datamodule has predict data, all in the same run folder. This is what ``make experiment``
calls.
"""

from __future__ import annotations

import os
import sys
import warnings

# Before PyTorch loads OpenMP: idle intra-op threads sleep instead of spinning on cores that other
# processes (or this run's loader workers) need (experiments/cores.py); a value set by the
# user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from experiments.cli import LatentLabCLI  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        args = ["fit", "--run.evaluate=true", *args[1:]]
    # we pass sys.argv on ourselves (rewritten for `run`); Lightning would warn about both being set
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    LatentLabCLI(args=args)


if __name__ == "__main__":
    main()
