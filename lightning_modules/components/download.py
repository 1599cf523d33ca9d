"""Fetch a pretrained file of the manifest (``components/pretrained.py``) with its checksum.

Only ``make weights DOWNLOAD=1`` (``experiments/weights.py``) and code that is explicitly asked
to fetch call this; nothing in a run downloads by itself. The bytes go to ``<file>.part``, their
sha256 is checked against the manifest, and only then is the file renamed into place; an
unreachable address fails within ``timeout`` seconds, never a hang or a retry loop.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from lightning_modules.components.pretrained import ChecksumError, PretrainedFile

__all__ = ["NetworkError", "download"]

_CHUNK = 1 << 20


class NetworkError(OSError):
    """The download address could not be reached (no network, refused, timed out)."""


def download(entry: PretrainedFile, path: Path, timeout: float = 15.0) -> None:
    """Fetch ``entry`` to ``path``: into ``<path>.part``, verified, then renamed.

    Raises:
        NetworkError: the address cannot be reached within ``timeout`` seconds.
        OSError: the server answered with an error (e.g. 404) or the file cannot be written.
        ChecksumError: the downloaded bytes have the wrong sha256 (nothing is kept).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout) as response, part.open("wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as error:
        part.unlink(missing_ok=True)
        raise OSError(f"{entry.url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        part.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise NetworkError(f"cannot reach {entry.url} ({reason}) within {timeout:g} s") from error
    actual = digest.hexdigest()
    if entry.sha256 is not None and not entry.matches(actual):
        part.unlink()
        raise ChecksumError(
            f"{entry.url}: downloaded bytes have the wrong checksum for {entry.name!r}: expected "
            f"sha256 {entry.sha256}, got {actual}; nothing was written to {path}"
        )
    part.replace(path)
