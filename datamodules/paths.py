"""Where datasets live: an explicit root, else $LATENTLAB_DATA/<name>, else data/<name>."""

from __future__ import annotations

import os
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
