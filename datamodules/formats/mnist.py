"""MNIST in its original IDX format: reader, writer, checksums and (opt-in) download.

IDX layout (big-endian): two zero bytes, a type byte (0x08 = uint8), a byte with the number of
dimensions, one int32 per dimension, then the values in C order. MNIST images have magic 2051
(0x00000803, dims n x 28 x 28) and labels magic 2049 (0x00000801, dims n). Files may be gzip-wrapped
(``.gz``); the reader accepts either, in ``<root>/`` or in torchvision's ``<root>/MNIST/raw/``.

Checksums are MD5s of the *uncompressed* files, so re-gzipped copies (other gzip headers, same
contents) verify too.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import urllib.request
from pathlib import Path

import numpy as np

from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.paths import make_data_command, resolve_root

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

#: split -> (images file, labels file, number of items)
SPLITS: dict[str, tuple[str, str, int]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}

#: MD5 of each uncompressed file of the MNIST distribution.
MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: Mirrors that serve ``<name>.gz``; tried in order by :func:`download_mnist`.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

FILES_HELP = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte; raw or .gz"
)


def how_to_get(root: str | Path) -> str:
    """What to run when MNIST is not under ``root``: commands that work as written."""
    return (
        f"Download and check it with `{make_data_command('mnist', root, DOWNLOAD=1)}` (internet),\n"
        f"or copy the four files ({FILES_HELP}) into {root} (flat, or under MNIST/raw/) and check "
        f"them with `{make_data_command('mnist', root)}`,\n"
        "or point the run at a folder that holds them: `--data.init_args.root=DIR` (or "
        "LATENTLAB_DATA=DIR holding mnist/)."
    )


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of uint8 values (raw or ``.gz``) into an array of its declared shape.

    Raises:
        FormatError: bad magic, unsupported type, a truncated file or trailing bytes.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError) as err:  # gzip CRC / truncated stream
        raise FormatError(path, f"cannot read IDX data ({err})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise FormatError(path, "not an IDX file (the first two bytes must be zero)")
    if data[2] != 0x08:
        raise FormatError(path, f"unsupported IDX type 0x{data[2]:02x} (only 0x08 = uint8)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(path, f"truncated header: {len(data)} bytes, need {header}")
    shape = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(shape)) if ndim else 1
    if len(data) - header != expected:
        raise FormatError(
            path, f"shape {shape} needs {expected} values, file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as IDX (gzip-wrapped when ``path`` ends in ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer takes uint8 arrays, got {array.dtype}")
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.GzipFile(path, "wb", mtime=0) if path.suffix == ".gz" else open(path, "wb")
    with opener as f:
        f.write(header + array.tobytes())
    return path


def idx_magic(path: str | Path) -> int:
    """The big-endian int32 magic of an IDX file (2051 for MNIST images, 2049 for labels)."""
    with _open(Path(path)) as f:
        head = f.read(4)
    if len(head) < 4:
        raise FormatError(path, "truncated header: fewer than 4 bytes")
    return struct.unpack(">i", head)[0]


def find_file(root: str | Path, name: str) -> Path:
    """Locate ``name`` (raw or ``.gz``) in ``root`` or ``root/MNIST/raw``; raw wins over ``.gz``."""
    root = Path(root)
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DatasetNotFoundError("MNIST", root, root / name, how_to_get(root))


def md5_uncompressed(path: str | Path) -> str:
    """MD5 hex digest of the file's uncompressed contents."""
    digest = hashlib.md5()
    with _open(Path(path)) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_mnist(root: str | Path) -> dict[str, Path]:
    """Check the four MNIST files under ``root`` against :data:`MD5`; return name -> path.

    Raises:
        DatasetNotFoundError: a file is missing.
        FormatError: a checksum disagrees.
    """
    found = {}
    for name, expected in MD5.items():
        path = find_file(root, name)
        actual = md5_uncompressed(path)
        if actual != expected:
            raise FormatError(
                path, f"MD5 of the uncompressed file is {actual}, expected {expected}"
            )
        found[name] = path
    return found


def read_mnist_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split: images uint8 (N, 28, 28) and labels uint8 (N,), with magic/count checks.

    The count is not required to equal MNIST's (60,000 / 10,000) so that the synthetic twin,
    written in the same format, goes through this reader; images and labels must agree.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    image_name, label_name, _ = SPLITS[split]
    image_path, label_path = find_file(root, image_name), find_file(root, label_name)
    for path, magic in ((image_path, IMAGES_MAGIC), (label_path, LABELS_MAGIC)):
        if idx_magic(path) != magic:
            raise FormatError(path, f"magic {idx_magic(path)}, expected {magic}")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise FormatError(image_path, f"images must be N x 28 x 28, got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise FormatError(label_path, f"{labels.shape[0]} labels for {images.shape[0]} images")
    if labels.max(initial=0) > 9:
        raise FormatError(label_path, f"label {int(labels.max())} outside 0..9")
    return images, labels


def download_mnist(root: str | Path, mirrors: tuple[str, ...] = MIRRORS) -> dict[str, Path]:
    """Download the four ``.gz`` files into ``root`` (skipping verified ones) and verify them.

    Needs internet; never called by the suite unless asked (``make data DATASET=mnist DOWNLOAD=1``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, expected in MD5.items():
        target = root / f"{name}.gz"
        if target.is_file() and md5_uncompressed(target) == expected:
            continue
        errors = []
        for mirror in mirrors:
            try:
                with urllib.request.urlopen(f"{mirror}{name}.gz", timeout=60) as response:
                    with open(target, "wb") as out:
                        shutil.copyfileobj(response, out)
                if md5_uncompressed(target) == expected:
                    break
                errors.append(f"{mirror}: checksum mismatch")
            except OSError as err:
                errors.append(f"{mirror}: {err}")
        else:
            target.unlink(missing_ok=True)
            raise DatasetNotFoundError(
                "MNIST", root, target, "Download failed: " + "; ".join(errors)
            )
    return verify_mnist(root)


def prepare_mnist(root: str | Path | None = None, download: bool = False) -> dict[str, Path]:
    """Verify MNIST under ``resolve_root(root, "mnist")``; download first when ``download``."""
    folder = resolve_root(root, "mnist")
    return download_mnist(folder) if download else verify_mnist(folder)
