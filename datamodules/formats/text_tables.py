"""Whitespace-separated text tables (``name v1 ... vk`` rows), parsed strictly and fast.

Annotation files of CelebA (and of CUB-style releases) are text tables: optionally a count line and
a header line, then one row per image. ``read_text_table`` returns the rows as an (N, k + 1) grid of
string tokens after checking the structure; callers convert and validate the values.

Speed: a 202,599-row table is split in one pass over the whole text into a token grid; only when
that grid is not clean (a token count that does not add up, a name that looks like a number, or a
value the caller rejects) is the file re-read line by line to name the exact line at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.formats.errors import FormatError


@dataclass
class TextTable:
    """A parsed table.

    Attributes:
        path: The file.
        header: Fields of the header line ([] when the format has none).
        grid: object array (N, width + 1) of string tokens; column 0 holds the image names.
        first_line: 1-based line number of the first row.
    """

    path: Path
    header: list[str]
    grid: np.ndarray
    first_line: int

    @property
    def names(self) -> list[str]:
        """The first column."""
        return self.grid[:, 0].tolist()

    def strict_rows(self) -> list[tuple[int, list[str]]]:
        """Re-read the rows one line at a time as ``(line, fields)``, to locate a bad value."""
        lines = read_lines(self.path)[self.first_line - 1 :]
        return [(self.first_line + k, text.split()) for k, text in enumerate(lines)]


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, trailing blank lines dropped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise FormatError(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_text_table(path: str | Path, width: int | None, counted: bool) -> TextTable:
    """Read a table whose rows are an image name followed by ``width`` values.

    Args:
        path: The file.
        width: Values per row; None takes the number of header fields.
        counted: The file opens with a count line and a header line (else rows start at line 1).

    Raises:
        FormatError: A missing or non-integer count line, a count that disagrees with the rows, an
            empty line, a row with the wrong number of values, or a repeated image name. A file
            cut mid-row is named at that row, also when its count line then disagrees.
    """
    path = Path(path)
    lines = read_lines(path)
    header, first = ([], 1)
    if counted:
        count = _count_line(path, lines)
        if len(lines) < 2:
            raise FormatError(path, "missing the header line", 2)
        header, first = lines[1].split(), 3
    width = len(header) if width is None else width
    if counted and len(lines) - 2 != count:
        _count_mismatch(path, lines, width, count)
    grid = _fast_grid(lines[first - 1 :], width)
    if grid is None:
        grid = _strict_grid(path, lines[first - 1 :], width, first)
    return TextTable(path, header, grid, first)


def parse_int(path: Path, text: str, what: str, line: int) -> int:
    """``int(text)``, or a FormatError naming ``what`` and the line."""
    try:
        return int(text)
    except ValueError:
        raise FormatError(path, f"{what} {text!r} is not an integer", line) from None


def int_columns(table: TextTable, columns: list[str]) -> np.ndarray:
    """The value columns as int64 (N, width); a non-integer is a FormatError naming its line."""
    try:
        return table.grid[:, 1:].astype(np.int64)
    except ValueError:
        for line, fields in table.strict_rows():
            for value, column in zip(fields[1:], columns, strict=True):
                parse_int(table.path, value, column, line)
        raise  # unreachable: some cell failed above


def _count_line(path: Path, lines: list[str]) -> int:
    fields = lines[0].split() if lines else []
    if len(fields) != 1 or not fields[0].isdigit():
        got = " ".join(fields) if lines else "an empty file"
        raise FormatError(path, f"first line must be the image count, got {got!r}", 1)
    return int(fields[0])


def _count_mismatch(path: Path, lines: list[str], width: int, count: int) -> None:
    """Raise at the first malformed row (a file cut mid-row breaks there), else at the count."""
    rows = len(lines) - 2
    hint = "truncated file?" if rows < count else "extra rows?"
    summary = f"the count line says {count} images but {rows} rows follow"
    try:
        _strict_grid(path, lines[2:], width, 3)
    except FormatError as err:
        raise FormatError(path, f"{err.reason} ({summary}: {hint})", err.line) from None
    raise FormatError(path, f"{summary} (last at line {len(lines)}): {hint}", 1)


def _looks_numeric(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def _fast_grid(lines: list[str], width: int) -> np.ndarray | None:
    """Token grid from one split of the whole text; None when it is not provably well aligned.

    Aligned means: the token count is rows x (width + 1), and no name is numeric while values are
    (callers check values), so a row with a missing or extra token would shift a name into a value
    cell or a value into a name cell.
    """
    tokens = " ".join(lines).split()
    if len(tokens) != len(lines) * (width + 1):
        return None
    grid = np.array(tokens, dtype=object).reshape(len(lines), width + 1)
    names = grid[:, 0].tolist()
    if any(_looks_numeric(n) for n in names) or len(set(names)) != len(names):
        return None
    return grid


def _strict_grid(path: Path, lines: list[str], width: int, first: int) -> np.ndarray:
    seen: dict[str, int] = {}
    rows = []
    for line, text in enumerate(lines, start=first):
        fields = text.split()
        if not fields:
            raise FormatError(path, "empty line inside the table", line)
        if len(fields) != width + 1:
            plural = "s" if width != 1 else ""
            msg = f"expected an image name and {width} value{plural}, got {len(fields) - 1}"
            raise FormatError(path, msg, line)
        if fields[0] in seen:
            msg = f"image {fields[0]} repeats (first at line {seen[fields[0]]})"
            raise FormatError(path, msg, line)
        seen[fields[0]] = line
        rows.append(fields)
    grid = np.empty((len(rows), width + 1), dtype=object)
    for i, fields in enumerate(rows):
        grid[i] = fields
    return grid
