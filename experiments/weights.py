"""``make weights``: the table of pretrained files (``components/pretrained.py``), offline.

``python -m experiments.weights [--weights-dir DIR] [--download] [NAME ...]`` prints, per manifest
file, its key, status (``verified``, ``verified (prefix)``, ``no digest``, ``wrong checksum``,
``missing``), size, path and the experiments that need it, then the command that gets each missing
file. Nothing is downloaded without ``--download`` (``make weights DOWNLOAD=1``), which fetches
the missing files (all, or the NAMEs given) into a temporary ``.part`` file, checks its sha256
and only then renames it into place; an unreachable network fails within ``--timeout`` seconds.

Exit status: 0 when nothing is wrong (missing files are reported, not errors); 1 when a file has
the wrong checksum or a download failed; 2 for an unknown NAME.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning_modules.components.download import NetworkError, download
from lightning_modules.components.pretrained import (
    MANIFEST,
    ChecksumError,
    PretrainedFile,
    download_command,
    resolve_weights_dir,
    weights_status,
)


def _size(path: Path) -> str:
    if not path.is_file():
        return "-"
    size = float(path.stat().st_size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def table(entries: Sequence[PretrainedFile], weights_dir: Path) -> tuple[str, dict[str, str]]:
    """The printed table and the status of each entry by key."""
    statuses = {e.name: weights_status(e, e.path(weights_dir)) for e in entries}
    rows = [("name", "status", "size", "path", "needed by")]
    rows += [
        (e.name, statuses[e.name], _size(e.path(weights_dir)), str(e.path(weights_dir)))
        + (", ".join(e.needed_by),)
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    return "\n".join(lines), statuses


def _fetch(entries: Sequence[PretrainedFile], weights_dir: Path, timeout: float) -> bool:
    """Download each entry; True when all arrived. Stops at the first unreachable network."""
    ok = True
    for i, entry in enumerate(entries):
        path = entry.path(weights_dir)
        print(f"downloading {entry.name}: {entry.url} -> {path}", flush=True)
        try:
            download(entry, path, timeout)
        except NetworkError as error:
            rest = len(entries) - i - 1
            print(
                f"error: {error}. No network here? Get the file on a machine with internet "
                f"(curl -L -o {shlex.quote(entry.file)} {entry.url}) and copy it to {path}"
                + (f"; not trying the other {rest} file(s)" if rest else ""),
                file=sys.stderr,
            )
            return False
        except (OSError, ChecksumError) as error:
            print(f"error: {error}", file=sys.stderr)
            ok = False
    return ok


def main(argv: Sequence[str] | None = None, manifest: Sequence[PretrainedFile] = MANIFEST) -> int:
    parser = argparse.ArgumentParser(prog="make weights", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="manifest keys (default: all)")
    parser.add_argument(
        "--weights-dir", type=Path, default=None, help="default: $LATENTLAB_WEIGHTS, else weights/"
    )
    parser.add_argument("--download", action="store_true", help="fetch missing files")
    parser.add_argument("--timeout", type=float, default=15.0, help="network timeout, seconds")
    args = parser.parse_args(argv)
    known = {e.name: e for e in manifest}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(
            f"error: unknown pretrained file(s) {', '.join(unknown)}; keys: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    entries = [known[n] for n in args.names] if args.names else list(manifest)
    weights_dir = resolve_weights_dir(args.weights_dir)
    text, statuses = table(entries, weights_dir)
    print(f"Pretrained files in {weights_dir} (LATENTLAB_WEIGHTS or WEIGHTS_DIR= to change)")
    print(text)
    ok = "wrong checksum" not in statuses.values()
    missing = [e for e in entries if statuses[e.name] == "missing"]
    if args.download and missing:
        ok = _fetch(missing, weights_dir, args.timeout) and ok
        text, statuses = table(entries, weights_dir)
        print(f"after downloading:\n{text}")
    for entry in entries:
        status = statuses[entry.name]
        if status == "missing":
            print(f"missing {entry.name}: {download_command(entry, args.weights_dir)}")
        elif status == "wrong checksum":
            path = shlex.quote(str(entry.path(weights_dir)))
            print(
                f"wrong checksum {entry.name}: `rm {path}`, then "
                f"{download_command(entry, args.weights_dir)}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
