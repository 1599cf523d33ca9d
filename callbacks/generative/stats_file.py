"""Real-set statistics (mean, covariance, count, optionally the features) in a file, with its key.

The key is a JSON-able dict (dataset, split, resolution, count, extractor, ...): the file name is
derived from it (``stats_path``) and the file stores it too, so a read checks that the file holds
what the name promises. The file is a torch file of plain tensors and the key, read with
``weights_only=True``; it is written to a temporary name in the same folder, then renamed, so a
reader sees the old file, the new one, or none, never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["RealStats", "key_text", "read_stats", "stats_path", "write_stats"]

FORMAT = "latentlab-real-stats-v1"


@dataclass
class RealStats:
    """Mean (d,) and covariance (d, d) in float64, the image count, and (for KID) the (N, d)
    features in dataset order."""

    mean: Tensor
    covariance: Tensor
    count: int
    features: Tensor | None = None

    def to(self, device: torch.device | str) -> RealStats:
        features = None if self.features is None else self.features.to(device)
        return RealStats(self.mean.to(device), self.covariance.to(device), self.count, features)


def key_text(key: dict[str, Any]) -> str:
    """The key as canonical JSON (sorted keys, no spaces): what files and memory compare."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def stats_path(folder: str | Path, key: dict[str, Any]) -> Path:
    """``<folder>/<split>-<H>x<W>-n<count>-<hash of the key>.pt``."""
    digest = hashlib.sha256(key_text(key).encode()).hexdigest()[:16]
    height, width = key["resolution"]
    return Path(folder) / f"{key['split']}-{height}x{width}-n{key['count']}-{digest}.pt"


def write_stats(path: Path, key: dict[str, Any], stats: RealStats) -> None:
    """Write ``stats`` under ``key`` to ``path`` (temporary file, then an atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "format": FORMAT,
        "key": key_text(key),
        "mean": stats.mean.detach().cpu().double(),
        "covariance": stats.covariance.detach().cpu().double(),
        "count": int(stats.count),
    }
    if stats.features is not None:
        content["features"] = stats.features.detach().cpu()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(content, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_stats(path: Path, key: dict[str, Any], num_features: int) -> RealStats:
    """The statistics in ``path``, checked against ``key`` and the feature size.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is unreadable (corrupted, truncated) or holds another key, other
            shapes, a count other than the key's, or values that are not finite.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no statistics file {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure of a damaged file
        raise ValueError(f"{path} is not a readable statistics file ({error})") from error
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(f"{path} is not a statistics file of format {FORMAT}")
    if content.get("key") != key_text(key):
        raise ValueError(f"{path} holds statistics of {content.get('key')}, not {key_text(key)}")
    mean, covariance = content.get("mean"), content.get("covariance")
    d = num_features
    if not (
        isinstance(mean, Tensor)
        and isinstance(covariance, Tensor)
        and tuple(mean.shape) == (d,)
        and tuple(covariance.shape) == (d, d)
        and mean.dtype == covariance.dtype == torch.float64
        and bool(torch.isfinite(mean).all() and torch.isfinite(covariance).all())
    ):
        raise ValueError(f"{path}: mean and covariance are not finite float64 ({d},), ({d}, {d})")
    count = content.get("count")
    if count != key["count"]:
        raise ValueError(f"{path}: holds {count} images, the key says {key['count']}")
    features = content.get("features")
    if features is not None and (
        not isinstance(features, Tensor) or tuple(features.shape) != (count, d)
    ):
        raise ValueError(f"{path}: the features are not ({count}, {d})")
    return RealStats(mean, covariance, count, features)
