"""The manifest of every pretrained file the suite can use, and the one way to find one on disk.

Each file is a :class:`PretrainedFile`: a short key (``vgg16``, ``fid_inception`` ...), its file
name under one weights folder, its sha256 (the full digest, or the prefix its publisher put in the
file name, torch.hub's convention, or None where nothing is published), its download address and
the experiments that need it. ``MANIFEST`` lists them all; ``make weights`` (``experiments/
weights.py``) prints it with what is present and verified, and fetches missing files with
``DOWNLOAD=1`` (``components/download.py``).

The weights folder is an explicit argument, else ``$LATENTLAB_WEIGHTS``, else ``weights/`` under the
current directory. Every weight-file argument of the suite (``weights_file``, ``trunk_weights`` ...)
goes through :func:`resolve_weights`: a manifest key resolves to its file in the weights folder
and is checksum-verified; an explicit path whose file name is a manifest file is verified too; any
other path (the user's own file) is taken as is. Digests are cached per (path, size, mtime) in
``.sha256-cache.json`` next to the files, so a repeated check does not rehash gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = [
    "MANIFEST",
    "ChecksumError",
    "PretrainedFile",
    "WeightsNotFoundError",
    "download_command",
    "file_sha256",
    "initial_weights",
    "manifest_entry",
    "resolve_weights",
    "resolve_weights_dir",
    "weights_status",
]

CACHE_FILE = ".sha256-cache.json"
_CHUNK = 1 << 20
_TORCHVISION = "https://download.pytorch.org/models/"
_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"


@dataclass(frozen=True)
class PretrainedFile:
    """One pretrained file.

    Attributes:
        name: Short key, used in configs (``weights_file: vgg16``) and on the command line.
        file: File name under the weights folder.
        url: Download address (https).
        sha256: The full sha256 (64 hex digits), the prefix its publisher gives (8 or more hex
            digits, marked by its length), or None where no digest is published.
        needed_by: Experiments (``<method>/<name>``), components and coming methods using it.
        description: What the file is.
    """

    name: str
    file: str
    url: str
    sha256: str | None
    needed_by: tuple[str, ...]
    description: str

    @property
    def digest_is_prefix(self) -> bool:
        """The recorded digest is a published prefix, not the whole sha256."""
        return self.sha256 is not None and len(self.sha256) < 64

    def path(self, weights_dir: str | Path | None = None) -> Path:
        """Where the file is expected: ``resolve_weights_dir(weights_dir) / file``."""
        return resolve_weights_dir(weights_dir) / self.file

    def matches(self, digest: str) -> bool:
        """``digest`` (a full sha256) is this file's (equal, or starting with the prefix)."""
        return self.sha256 is not None and digest.startswith(self.sha256)


def _hf(name: str, arch: str, needed_by: tuple[str, ...], description: str) -> PretrainedFile:
    """A timm model's ImageNet weights on the Hugging Face hub (no digest published there)."""
    file, url = f"{arch}.safetensors", _HF.format(arch)
    return PretrainedFile(name, file, url, None, needed_by, description)


_MINMAXCAM_VGG = tuple(
    f"minmaxcam/cub_vgg16{v}" for v in ("", "_cam", "_intensity", "_mask_features")
)
_MINMAXCAM_MOBILENET_V2 = tuple(
    f"minmaxcam/cub_mobilenet_v2{v}" for v in ("", "_cam", "_mask_features")
)

#: Every pretrained file the suite can use. Digests: the full sha256 where public projects that
#: verify these files pin it, else the prefix in the file name (torch.hub's convention), else
#: None (nothing published, or not corroborated: the Hugging Face files, FaceNet).
MANIFEST: tuple[PretrainedFile, ...] = (
    PretrainedFile(
        "fid_inception",
        "weights-inception-2015-12-05-6726825d.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        ("callbacks.fid.LogFID", "disentangle", "istrc", "hallucination"),
        "Inception-v3 of TF's 2015-12-05 release ported to PyTorch by torch-fidelity: the FID "
        "and KID feature extractor of torchmetrics and torch-fidelity",
    ),
    PretrainedFile(
        "vgg16",
        "vgg16-397923af.pth",
        _TORCHVISION + "vgg16-397923af.pth",
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        (*_MINMAXCAM_VGG, "LPIPS net=vgg", "ust", "hallucination", "olr"),
        "torchvision VGG16 ImageNet (IMAGENET1K_V1): MinMaxCAM's VGG16 and the LPIPS-VGG trunk, "
        "UST's Gram-loss network",
    ),
    PretrainedFile(
        "alexnet",
        "alexnet-owt-7be5be79.pth",
        _TORCHVISION + "alexnet-owt-7be5be79.pth",
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        ("LPIPS net=alex", "vebi", "ust"),
        "torchvision AlexNet ImageNet (IMAGENET1K_V1): the LPIPS-Alex trunk (UST's retrieval "
        "re-ranking), VEBI's stand-in for VGG-F",
    ),
    PretrainedFile(
        "resnet50",
        "resnet50-19c8e357.pth",
        _TORCHVISION + "resnet50-19c8e357.pth",
        "19c8e357",
        ("minmaxcam/cub_resnet50", "minmaxcam/cub_resnet50_cam"),
        "torchvision ResNet-50 ImageNet, the original release the WSOL reference "
        "(clovaai/wsolevaluation wsol/resnet.py) loads",
    ),
    PretrainedFile(
        "mobilenet_v2",
        "mobilenet_v2-b0353104.pth",
        _TORCHVISION + "mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        _MINMAXCAM_MOBILENET_V2,
        "torchvision MobileNetV2 ImageNet (IMAGENET1K_V1)",
    ),
    _hf(
        "mobilenetv1_100",
        "mobilenetv1_100.ra4_e3600_r224_in1k",
        ("minmaxcam/cub_mobilenet_v1",),
        "timm mobilenetv1_100 ImageNet (Table 5.3's MobileNetV1)",
    ),
    _hf(
        "seresnext101_32x4d",
        "seresnext101_32x4d.gluon_in1k",
        ("face_attributes/celeba",),
        "timm SE-ResNeXt-101 32x4d ImageNet (gluon), the face-attribute classifier's start",
    ),
    _hf(
        "seresnext26t_32x4d",
        "seresnext26t_32x4d.bt_in1k",
        ("face_attributes/celeba_64px",),
        "timm SE-ResNeXt-26t 32x4d ImageNet, the fast face-attribute variant's start",
    ),
    PretrainedFile(
        "facenet_vggface2",
        "20180402-114759-vggface2.pt",
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
        "20180402-114759-vggface2.pt",
        None,  # one public source gives a digest no other corroborates: not recorded
        ("istrc",),
        "FaceNet (InceptionResnetV1, 512-d) trained on VGGFace2, facenet-pytorch's port of "
        "Sandberg's 20180402-114759 model: ISTRC's face encoder when a real one is used",
    ),
)


def resolve_weights_dir(weights_dir: str | Path | None = None) -> Path:
    """The weights folder: ``weights_dir``, else ``$LATENTLAB_WEIGHTS``, else ``weights``."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    return Path(os.environ.get("LATENTLAB_WEIGHTS", "weights")).expanduser()


def manifest_entry(name: str, manifest: Sequence[PretrainedFile] = MANIFEST) -> PretrainedFile:
    """The entry of key ``name``.

    Raises:
        KeyError: no such key (the message lists them).
    """
    for entry in manifest:
        if entry.name == name:
            return entry
    raise KeyError(
        f"no pretrained file {name!r}; keys: {', '.join(e.name for e in manifest)} "
        "(make weights lists them)"
    )


def _entry_for_file(file: str, manifest: Sequence[PretrainedFile]) -> PretrainedFile | None:
    return next((entry for entry in manifest if entry.file == file), None)


def _read_cache(folder: Path) -> dict[str, list]:
    try:
        cache = json.loads((folder / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def file_sha256(path: str | Path, use_cache: bool = True) -> str:
    """The sha256 of ``path``, read in chunks; cached per (name, size, mtime) in its folder.

    The cache is ``.sha256-cache.json`` next to the file; a folder that cannot be written (a
    read-only share) just goes without it.
    """
    path = Path(path)
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    cache = _read_cache(path.parent) if use_cache else {}
    known = cache.get(path.name)
    if isinstance(known, list) and known[:2] == stamp and len(known) == 3:
        return str(known[2])
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    if use_cache:
        cache[path.name] = [*stamp, value]
        try:
            (path.parent / CACHE_FILE).write_text(json.dumps(cache, indent=1, sort_keys=True))
        except OSError:
            pass  # an optimisation only: the next check hashes the file again
    return value


def download_command(
    entry: PretrainedFile, weights_dir: str | Path | None = None, path: Path | None = None
) -> str:
    """The command lines that get ``entry``: ``make weights DOWNLOAD=1 ...``, else ``curl``."""
    target = path if path is not None else entry.path(weights_dir)
    folder = f" WEIGHTS_DIR={shlex.quote(str(weights_dir))}" if weights_dir is not None else ""
    make = f"make weights DOWNLOAD=1 NAMES={entry.name}{folder}"
    if path is not None and path != entry.path(weights_dir):
        make = ""  # an explicit path elsewhere: only curl writes it there
    curl = f"curl -L -o {shlex.quote(str(target))} {entry.url}"
    return f"`{make}` (with internet), or `{curl}`" if make else f"`{curl}`"


class ChecksumError(ValueError):
    """A manifest file whose sha256 is not the recorded one."""


class WeightsNotFoundError(FileNotFoundError):
    """A weights file that is not there; the message says how to get it."""


def _verify(entry: PretrainedFile, path: Path, weights_dir: str | Path | None) -> Path:
    if not path.is_file():
        raise WeightsNotFoundError(
            f"pretrained file {entry.name!r} ({entry.file}) not found at {path}; get it with "
            f"{download_command(entry, weights_dir, path)}; `make weights` lists every file"
        )
    if entry.sha256 is None:
        return path
    actual = file_sha256(path)
    if not entry.matches(actual):
        kind = "sha256 prefix" if entry.digest_is_prefix else "sha256"
        raise ChecksumError(
            f"{path}: wrong checksum for pretrained file {entry.name!r} ({entry.file}): expected "
            f"{kind} {entry.sha256}, got {actual}; remove it and download it again: `rm "
            f"{shlex.quote(str(path))}`, then {download_command(entry, weights_dir, path)}"
        )
    return path


def resolve_weights(
    name_or_path: str | Path,
    weights_dir: str | Path | None = None,
    manifest: Sequence[PretrainedFile] = MANIFEST,
) -> Path:
    """The verified file of a manifest key, or an explicit path.

    Args:
        name_or_path: A manifest key (``"vgg16"``) or a file path. A path whose file name is a
            manifest file is verified against it; any other path is the user's own file.
        weights_dir: The weights folder for keys (``resolve_weights_dir``).
        manifest: The entries to look keys and file names up in.

    Raises:
        WeightsNotFoundError: the file is missing (naming it, the expected path and the command
            that gets it); a ``FileNotFoundError``.
        ChecksumError: a manifest file with the wrong sha256 (expected and actual digests).
    """
    text = str(name_or_path)
    keyed = next((e for e in manifest if e.name == text), None)
    if keyed is not None:
        return _verify(keyed, keyed.path(weights_dir), weights_dir)
    path = Path(text).expanduser()
    entry = _entry_for_file(path.name, manifest)
    if entry is not None:
        return _verify(entry, path, weights_dir)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file not found: {path} (neither a file nor a manifest key; keys: "
            f"{', '.join(e.name for e in manifest)}; `make weights` lists them)"
        )
    return path


def weights_status(entry: PretrainedFile, path: Path) -> str:
    """``verified``, ``verified (prefix)``, ``wrong checksum``, ``missing`` or ``no digest``."""
    if not path.is_file():
        return "missing"
    if entry.sha256 is None:
        return "no digest"
    if not entry.matches(file_sha256(path)):
        return "wrong checksum"
    return "verified (prefix)" if entry.digest_is_prefix else "verified"


def initial_weights(owner: str, weights_file: str | None, random_init: bool) -> str | None:
    """The verified weights file a module starts from, or None for random initialisation.

    ``random_init=True`` is the explicit opt-out of a configuration that names a file: the file
    is not read, with a warning. A start without a file is logged too, so the run's log says so
    either way (the saved hyperparameters and config.yaml hold ``weights_file`` and
    ``random_init``).

    Args:
        owner: Who starts (for the messages), e.g. the module's class name.
        weights_file: Manifest key or path (``resolve_weights``); None = no pretrained weights.
        random_init: Start from random weights even where ``weights_file`` names a file.

    Raises:
        WeightsNotFoundError, ChecksumError: as ``resolve_weights``, the message ending with the
            opt-out (``random_init``).
    """
    if random_init:
        skipped = f" (weights_file={weights_file!r} is not loaded)" if weights_file else ""
        rank_zero_warn(f"{owner}: random_init=True: random initialisation{skipped}")
        return None
    if weights_file is None:
        rank_zero_info(f"{owner}: no weights_file: random initialisation")
        return None
    try:
        return str(resolve_weights(weights_file))
    except (WeightsNotFoundError, ChecksumError) as error:
        opt_out = (
            f"; {owner} starts from these weights: to start from random ones instead, set "
            'random_init: true (ARGS="--model.init_args.random_init=true")'
        )
        raise type(error)(f"{error}{opt_out}") from None
