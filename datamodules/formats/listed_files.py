"""Setup's check of the image files a dataset lists: each one exists and is not empty.

One ``stat`` per file, no decode, so a missing or zero-byte image is refused when the DataModule is
set up (naming the table and line that lists it) instead of at the first batch inside a loader
worker. A file that exists but does not decode is still found by the reader (``read_rgb``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from datamodules.formats.errors import FormatError


def check_listed_files(files: Iterable[tuple[int | None, Path]], listed_in: Path | None) -> None:
    """Raise on the first listed file that is missing or empty.

    Args:
        files: ``(line, path)`` pairs: the file and the line of ``listed_in`` that lists it (None
            when the dataset has no table and lists its images by walking a folder).
        listed_in: The table that lists the files, named in the error; None names the file itself.

    Raises:
        FormatError: ``<table>:<line>: lists <path> but it does not exist`` (or ``is empty (0
            bytes)``); without a table, ``<path>: empty image file (0 bytes)``.
    """
    for line, path in files:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            problem = "does not exist"
        else:
            if size > 0:
                continue
            problem = "is empty (0 bytes)"
        if listed_in is None:
            raise FormatError(path, f"image file {problem}")
        raise FormatError(listed_in, f"lists {path} but it {problem}", line)
