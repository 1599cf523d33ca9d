"""FFHQ's released on-disk format (NVlabs/ffhq-dataset), read, plus a one-time resized cache.

Layouts accepted under a root folder:

    images1024x1024/00000/00000.png ... 69000/69999.png     folders of 1,000, PNG 1024 x 1024
    thumbnails128x128/00000/00000.png ...                   the released 128 px thumbnails
    <flat folder>/00000.png ...                             any folder of NNNNN.png

plus, when present, ``ffhq-dataset-v2.json`` (the release's metadata, keyed by image index).

Decoding 1024 px PNGs every epoch is slow, so ``build_resized_cache`` writes, once, an antialiased
resize to ``<root>/cache_<res>/NNN00/NNNNN.png`` with a manifest recording the source and the
resolution; a second call with the same source is a no-op, a changed source rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import re
from multiprocessing import get_context
from pathlib import Path

from rich.progress import track
from torchvision.io import ImageReadMode, decode_image, write_png
from torchvision.transforms.v2 import functional as F

from datamodules.formats.errors import DatasetNotFoundError, FormatError

IMAGES_1024 = "images1024x1024"
THUMBNAILS_128 = "thumbnails128x128"
METADATA_FILE = "ffhq-dataset-v2.json"
MANIFEST_FILE = "cache_manifest.json"
HOW_TO_GET = (
    "FFHQ cannot be downloaded by this suite. Get it from https://github.com/NVlabs/ffhq-dataset: "
    "`python download_ffhq.py --images` in a clone of that repository (89 GB of 1024 x 1024 "
    "PNGs), or the Google Drive folder linked there. Place images1024x1024/ (00000/00000.png ... "
    "69000/69999.png) under the data root; thumbnails128x128/ or a flat folder of NNNNN.png also "
    "work, ffhq-dataset-v2.json is optional. A copy elsewhere: run with "
    "`--data.init_args.root=DIR` (or LATENTLAB_DATA=DIR holding ffhq/). Without the real data, "
    "`make data DATASET=synthetic-faces OUT=DIR` writes a synthetic twin under DIR/ffhq (or run "
    "with `--data.init_args.synthetic=small`)."
)
_FOLDER = re.compile(r"\d{5}")
_IMAGE = re.compile(r"(\d{5})\.png")


def image_relpath(index: int, folder: str = IMAGES_1024) -> Path:
    """Release path of image ``index`` (0-based).

    ``image_relpath(1234) == Path("images1024x1024/01000/01234.png")``.
    """
    return Path(folder) / f"{index // 1000 * 1000:05d}" / f"{index:05d}.png"


def list_ffhq_images(root: str | Path) -> list[tuple[int, Path]]:
    """List the images of an FFHQ root as ``(index, path)`` pairs sorted by index.

    ``root/images1024x1024/`` wins over ``root/thumbnails128x128/``; otherwise ``root`` itself is
    read as a nested folder (subfolders ``NNN00``) or, failing that, a flat folder of ``NNNNN.png``.

    Raises:
        DatasetNotFoundError: ``root`` is missing or holds no FFHQ image.
        FormatError: Inside a nested layout, a file that is not ``NNNNN.png``, an image in the wrong
            ``NNN00`` folder, or a subfolder named with 5 digits that is not a multiple of 1,000.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError("FFHQ", root, root, HOW_TO_GET)
    for sub in (IMAGES_1024, THUMBNAILS_128):
        if (root / sub).is_dir():
            return _list_nested(root / sub)
    if any(p.is_dir() and _FOLDER.fullmatch(p.name) for p in root.iterdir()):
        return _list_nested(root)
    images = _list_flat(root)
    if not images:
        missing = root / IMAGES_1024
        raise DatasetNotFoundError(
            "FFHQ", root, missing, f"No NNNNN.png under {root}. {HOW_TO_GET}"
        )
    return images


def read_ffhq_metadata(path: str | Path) -> dict[int, dict]:
    """Read ``ffhq-dataset-v2.json``: image index -> its record (``category``, ``image``, ...).

    Raises:
        FormatError: Invalid JSON (with its line), not an object, a key that is not an integer, or a
            record that is not an object.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FormatError(
            path, f"invalid JSON: {err.msg} (column {err.colno})", err.lineno
        ) from None
    if not isinstance(raw, dict):
        raise FormatError(
            path, f"expected an object keyed by image index, got {type(raw).__name__}"
        )
    records: dict[int, dict] = {}
    for key, record in raw.items():
        if not key.isdigit():
            raise FormatError(path, f"key {key!r} is not an image index")
        if not isinstance(record, dict):
            raise FormatError(path, f"record {key} is {type(record).__name__}, not an object")
        records[int(key)] = record
    return records


def build_resized_cache(
    root: str | Path, res: int, out: str | Path | None = None, workers: int = 0
) -> Path:
    """Write every image of ``root``, resized to ``res`` x ``res``, to ``out/NNN00/NNNNN.png``.

    The resize is bilinear with antialiasing. A manifest (``out/cache_manifest.json``, written last)
    records the source folder, its image count, a fingerprint of names, sizes and modification
    times, and ``res``; when it matches and the cache holds that many images, the call returns at
    once. Otherwise the cache is rebuilt and images no longer in the source are removed from it.

    Args:
        root: The FFHQ root (any layout ``list_ffhq_images`` accepts).
        res: Side of the cached images in pixels.
        out: Cache folder; defaults to ``<root>/cache_<res>``.
        workers: Processes decoding in parallel; 0 decodes in this process.

    Returns:
        The cache folder.
    """
    if res <= 0:
        raise ValueError(f"res must be positive, got {res}")
    root = Path(root)
    out = Path(out) if out is not None else root / f"cache_{res}"
    sources = list_ffhq_images(root)
    manifest = _manifest(root, sources, res)
    manifest_path = out / MANIFEST_FILE
    complete = len(list(out.glob("*/*.png"))) == len(sources)
    if complete and manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest:
        return out
    manifest_path.unlink(missing_ok=True)
    _remove_stale(out, {index for index, _ in sources})
    jobs = [(str(path), str(out / image_relpath(i, ".")), res) for i, path in sources]
    if workers > 0:
        with get_context("spawn").Pool(workers) as pool:
            results = pool.imap_unordered(_resize_one, jobs, chunksize=16)
            _drain(results, len(jobs), res)
    else:
        _drain(map(_resize_one, jobs), len(jobs), res)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def read_cache_manifest(cache: str | Path) -> dict | None:
    """The manifest of a finished cache folder, or None (absent, or its build never finished)."""
    path = Path(cache) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _list_nested(folder: Path) -> list[tuple[int, Path]]:
    images = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _FOLDER.fullmatch(p.name)):
        if int(sub.name) % 1000:
            raise FormatError(
                sub, "FFHQ folders are named by multiples of 1000 (00000, 01000, ...)"
            )
        for path in sorted(sub.iterdir()):
            if path.name.startswith("."):
                continue
            match = _IMAGE.fullmatch(path.name)
            if match is None or not path.is_file():
                raise FormatError(path, "not an FFHQ image name (expected NNNNN.png)")
            index = int(match.group(1))
            if index // 1000 * 1000 != int(sub.name):
                raise FormatError(
                    path, f"image {index:05d} belongs in folder {index // 1000:03d}00"
                )
            images.append((index, path))
    if not images:
        raise DatasetNotFoundError(
            "FFHQ", folder, folder / "00000", f"{folder} is empty. {HOW_TO_GET}"
        )
    return images


def _list_flat(folder: Path) -> list[tuple[int, Path]]:
    images = []
    for path in sorted(folder.glob("*.png")):
        match = _IMAGE.fullmatch(path.name)
        if match is None:
            raise FormatError(path, "not an FFHQ image name (expected NNNNN.png)")
        images.append((int(match.group(1)), path))
    return images


def _manifest(root: Path, sources: list[tuple[int, Path]], res: int) -> dict:
    digest = hashlib.sha1()
    for index, path in sources:
        stat = path.stat()
        digest.update(f"{index} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    source = str(root.resolve())
    return {"res": res, "count": len(sources), "source": source, "fingerprint": digest.hexdigest()}


def _remove_stale(out: Path, keep: set[int]) -> None:
    if not out.is_dir():
        return
    for path in out.glob("*/*.png"):
        match = _IMAGE.fullmatch(path.name)
        if match is not None and int(match.group(1)) not in keep:
            path.unlink()


def _resize_one(job: tuple[str, str, int]) -> tuple[str, str] | None:
    """Resize one image; returns ``(file, problem)`` rather than raising (workers pickle it)."""
    source, target, res = job
    try:
        image = decode_image(source, mode=ImageReadMode.RGB)
    except RuntimeError as err:
        return source, f"cannot decode image ({err})"
    image = F.resize(image, [res, res], antialias=True)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    write_png(image, target)
    return None


def _drain(results, total: int, res: int) -> None:
    for error in track(results, total=total, description=f"FFHQ cache {res}px"):
        if error is not None:
            raise FormatError(*error)
