"""Setup's check of the image files a dataset lists: each one exists and is not empty.

One ``stat`` per file, no decode, so a missing or zero-byte image is refused when the DataModule is
set up (naming the table and line that lists it) instead of at the first batch inside a loader
worker. A file that exists but does not decode is still found by the reader (``read_rgb``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from datamodules.formats.errors import FormatError


def check_listed_files(files: Iterable[tuple[int | None, Path]], listed_in: Path | None) -> None:
    """Raise on the first listed file that is missing, empty, or not a file (a folder).

    Args:
        files: ``(line, path)`` pairs: the file and the line of ``listed_in`` that lists it (None
            when the dataset has no table and lists its images by walking a folder).
        listed_in: The table that lists the files, named in the error; None names the file itself.

    Raises:
        FormatError: ``<table>:<line>: lists <path> but it does not exist`` (or ``is empty (0
            bytes)``, ``is not a file``); without a table, ``<path>: image file is empty (0
            bytes)`` and so on.
    """
    for line, path in files:
        try:
            status = os.stat(path)
        except FileNotFoundError:
            problem = "does not exist"
        else:
            if stat.S_ISREG(status.st_mode) and status.st_size > 0:
                continue
            problem = "is empty (0 bytes)" if stat.S_ISREG(status.st_mode) else "is not a file"
        if listed_in is None:
            raise FormatError(path, f"image file {problem}")
        raise FormatError(listed_in, f"lists {path} but it {problem}", line)
