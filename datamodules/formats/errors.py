"""Errors raised by the format readers: every one names the file (and line) at fault."""

from __future__ import annotations

from pathlib import Path


class FormatError(ValueError):
    """A dataset file is malformed, truncated, or disagrees with another file.

    The message reads ``<path>:<line>: <what is wrong>`` so editors and terminals can jump to it.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        self._args = (path, message, line)
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # keeps the type when raised inside a DataLoader worker
        return type(self), self._args


class SettingError(ValueError):
    """A data-module setting the data (or the number of processes) cannot serve; the message names
    the flag and a value that works."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset or one of its files is absent; the message says where to get it, laid out how."""

    def __init__(
        self, dataset: str, root: str | Path, missing: str | Path, how_to_get: str
    ) -> None:
        self.dataset = dataset
        self.root = Path(root)
        self.missing = Path(missing)
        self._args = (dataset, root, missing, how_to_get)
        super().__init__(
            f"{dataset} not found: {self.missing} does not exist (data root: {self.root}).\n"
            f"{how_to_get}"
        )

    def __reduce__(self):  # keeps the type when raised inside a DataLoader worker
        return type(self), self._args


FLAG_PREFIX = "--data.init_args."  # how a data module's own arguments are set on the command line


def for_nested(error: Exception, part: str) -> Exception:
    """``error`` raised by a data module nested in another one under the init argument ``part``
    (``source``, ``target``), with the flags its message suggests pointed at that module
    (``--data.init_args.<part>.init_args.root=...``); other errors as they are."""
    nested = f"{FLAG_PREFIX}{part}.init_args."
    if isinstance(error, DatasetNotFoundError):
        dataset, root, missing, how_to_get = error._args
        return DatasetNotFoundError(dataset, root, missing, how_to_get.replace(FLAG_PREFIX, nested))
    if isinstance(error, FormatError):
        return FormatError(error.path, error.reason.replace(FLAG_PREFIX, nested), error.line)
    return error
