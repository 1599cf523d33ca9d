"""Where datasets live: an explicit root, else $LATENTLAB_DATA/<name>, else data/<name>.

Also the ``make data`` command line that error hints give for a root.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def resolve_root(root: str | Path | None, name: str) -> Path:
    """Return the folder of dataset ``name``.

    Args:
        root: Explicit folder; wins when given.
        name: Sub-folder under the shared data directory (``celeba``, ``ffhq``, ``cub`` ...).
    """
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("LATENTLAB_DATA", "data")
    return Path(base).expanduser() / name


def make_data_command(dataset: str, root: str | Path | None = None, **variables: object) -> str:
    """The ``make data`` command line (the Makefile's variables) for error hints, e.g.

    ``make_data_command("mnist", "data/mnist", DOWNLOAD=1)`` ->
    ``make data DATASET=mnist DOWNLOAD=1 ROOT=data/mnist``.
    """
    words = [f"DATASET={dataset}", *(f"{k}={v}" for k, v in variables.items())]
    if root is not None:
        words.append(f"ROOT={shlex.quote(str(root))}")
    return "make data " + " ".join(words)
