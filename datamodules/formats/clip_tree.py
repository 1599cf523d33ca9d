"""A VoxCeleb-like clip tree of aligned face frames, read and written.

Layout under a root::

    <identity>/<clip>/<frame>.jpg     178 x 218 RGB frames aligned like CelebA's img_align_celeba
                                      (the same landmark positions), so the same crop boxes apply
    list_landmarks_align.txt          CelebA's aligned-landmark table: count line, the header
                                      "lefteye_x lefteye_y ... rightmouth_y", rows
                                      "<identity>/<clip>/<frame>.jpg x y ..." (integer pixels)

Identity, clip and frame names are strings (no whitespace, no ``/``); frames are ``.jpg`` files,
other files are ignored. The reader walks the tree in name order (identities, then their clips,
then their frames, each sorted by name) and matches every frame to its landmark row, so poses can
be fitted exactly as for CelebA (``datamodules.head_pose.pose_from_landmarks``). The landmark
table is CelebA's (``datamodules.formats.celeba.write_landmarks`` / ``read_landmarks``).

Readers are strict: a missing root or table is a ``DatasetNotFoundError`` saying how to get one;
a frame without a landmark row, a row without a frame, an identity without clips and a clip without
frames are ``FormatError``s naming the file (and line).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from datamodules.formats import celeba as celeba_format
from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.paths import make_data_command

__all__ = [
    "LANDMARK_FILE",
    "ClipTreeIndex",
    "frame_path",
    "how_to_get",
    "read_clip_tree",
    "write_clip_tree",
]

LANDMARK_FILE = "list_landmarks_align.txt"
FRAME_SUFFIX = ".jpg"
DATASET = "Clip tree (VoxCeleb-like)"


@dataclass
class ClipTreeIndex:
    """Every frame of a clip tree, in name order, with its identity, clip and landmarks.

    Attributes:
        root: The tree's root.
        paths: N frame paths relative to ``root``, ``<identity>/<clip>/<frame>.jpg``.
        identity: long (N,) index into ``identity_names`` of each frame.
        clip: long (N,) index into ``clip_names`` of each frame; one index per (identity, clip),
            so two identities' clips never share one.
        identity_names: The identity folder names, sorted.
        clip_names: ``<identity>/<clip>`` of every clip, sorted by identity then clip name.
        landmarks: long (N, 10) aligned landmarks ``lefteye_x ... rightmouth_y`` of each frame.
    """

    root: Path
    paths: list[str]
    identity: torch.Tensor
    clip: torch.Tensor
    identity_names: list[str]
    clip_names: list[str]
    landmarks: torch.Tensor

    @property
    def clip_identity(self) -> torch.Tensor:
        """long (num_clips,) the identity index of each clip."""
        owner = torch.empty(len(self.clip_names), dtype=torch.long)
        owner[self.clip] = self.identity
        return owner


def frame_path(identity: str, clip: str, frame: str) -> str:
    """The relative path ``<identity>/<clip>/<frame>.jpg`` of one frame.

    Raises:
        ValueError: A name that is empty, ``.`` or ``..``, or holds whitespace or ``/``.
    """
    for what, name in (("identity", identity), ("clip", clip), ("frame", frame)):
        _check_name(what, name)
    return f"{identity}/{clip}/{frame}{FRAME_SUFFIX}"


def _check_name(what: str, name: str) -> None:
    if not name or name in (".", "..") or "/" in name or any(c.isspace() for c in name):
        raise ValueError(
            f"{what} name {name!r} must be non-empty, without whitespace or '/' and not '.'/'..' "
            f"(it is one folder or file name of <identity>/<clip>/<frame>{FRAME_SUFFIX})"
        )


def _split_path(path: str) -> tuple[str, str, str]:
    """``(identity, clip, frame)`` of a relative frame path, or a ValueError."""
    parts = path.split("/")
    if len(parts) != 3 or not parts[2].endswith(FRAME_SUFFIX):
        raise ValueError(f"frame path {path!r} is not <identity>/<clip>/<frame>{FRAME_SUFFIX}")
    frame_path(parts[0], parts[1], parts[2][: -len(FRAME_SUFFIX)])
    return parts[0], parts[1], parts[2]


def write_clip_tree(
    root: str | Path, sources: Sequence[str | Path], paths: Sequence[str], landmarks: torch.Tensor
) -> None:
    """Write a clip tree: each source image at its path (a hard link when the file system allows,
    else a copy: the same bytes either way) and the landmark table in ``paths`` order.

    A tree written before at ``root`` is replaced: the frames its table lists are removed first
    (and folders left empty), so the new tree holds no stale frame.

    Args:
        root: The tree's root (created).
        sources: N existing aligned 178 x 218 JPEGs.
        paths: N relative paths ``<identity>/<clip>/<frame>.jpg`` (see ``frame_path``).
        landmarks: (N, 10) integer pixel coordinates of each frame (rounded when float).

    Raises:
        ValueError: Lengths that disagree, a malformed or repeated path, or a ``root`` that is not
            empty and holds no landmark table (nothing is written then).
    """
    root = Path(root)
    if not len(sources) == len(paths) == len(landmarks):
        raise ValueError(
            f"{len(sources)} sources, {len(paths)} paths and {len(landmarks)} landmark rows: "
            "one each per frame"
        )
    for path in paths:
        _split_path(path)
    if len(set(paths)) != len(paths):
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"frame paths repeat: {repeated[:5]}")
    _remove_previous(root)
    for source, path in zip(sources, paths, strict=True):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, target)
    celeba_format.write_landmarks(root / LANDMARK_FILE, list(paths), landmarks)


def _remove_previous(root: Path) -> None:
    """Remove the tree that ``root``'s landmark table lists (refuse other non-empty folders)."""
    if not root.exists():
        return
    table = root / LANDMARK_FILE
    if not table.exists():
        if any(root.iterdir()):
            raise ValueError(
                f"{root} is not empty and holds no {LANDMARK_FILE}: refusing to write a clip "
                "tree into it"
            )
        return
    names, _ = celeba_format.read_landmarks(table)
    for name in names:
        _split_path(name)  # never unlink outside the tree
        (root / name).unlink(missing_ok=True)
    table.unlink()
    folders = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for folder in folders:
        with contextlib.suppress(OSError):  # only empty folders go
            folder.rmdir()


def how_to_get(root: Path) -> str:
    """How to get a clip tree under ``root``; the commands work as written."""
    return (
        "The suite does not ship VoxCeleb ([SUBST]: real CelebA runs use pseudo-clips instead).\n"
        f"A clip tree under {root} holds <identity>/<clip>/<frame>.jpg frames aligned like "
        f"CelebA's img_align_celeba (178 x 218, the same landmark positions) and {LANDMARK_FILE} "
        "in CelebA's aligned-landmark format with rows '<identity>/<clip>/<frame>.jpg x y ...'; "
        "VoxCeleb frames must be aligned to that layout first (no converter ships).\n"
        f"`{make_data_command('synthetic-faces')} OUT=DIR` writes the synthetic face twin, whose "
        "clip tree is DIR/vox."
    )


def read_clip_tree(root: str | Path) -> ClipTreeIndex:
    """Walk a clip tree and match its frames to the landmark table (module docstring: layout).

    Raises:
        DatasetNotFoundError: ``root`` or its ``list_landmarks_align.txt`` is missing.
        FormatError: A malformed table (CelebA's landmark checks), a row whose frame does not
            exist (its line), a frame without a row (the count line), a name with whitespace, an
            identity folder without clip folders, a clip folder without frames, or no identity.
    """
    root = Path(root)
    table = root / LANDMARK_FILE
    if not root.is_dir():
        raise DatasetNotFoundError(DATASET, root, root, how_to_get(root))
    if not table.exists():
        raise DatasetNotFoundError(DATASET, root, table, how_to_get(root))
    paths, identity, clip, identity_names, clip_names = _walk(root)
    names, marks = celeba_format.read_landmarks(table)
    position = {p: i for i, p in enumerate(paths)}
    for j, name in enumerate(names):
        if name not in position:
            raise FormatError(table, f"{name} has no frame: {root / name} does not exist", j + 3)
    if len(names) != len(paths):
        listed = set(names)
        lost = next(p for p in paths if p not in listed)
        raise FormatError(
            table,
            f"frame {lost} has no landmark row (the table lists {len(names)} frames, the tree "
            f"holds {len(paths)})",
            1,
        )
    landmarks = torch.empty_like(marks)
    landmarks[torch.tensor([position[n] for n in names], dtype=torch.long)] = marks
    return ClipTreeIndex(
        root=root,
        paths=paths,
        identity=torch.tensor(identity, dtype=torch.long),
        clip=torch.tensor(clip, dtype=torch.long),
        identity_names=identity_names,
        clip_names=clip_names,
        landmarks=landmarks,
    )


def _folders(folder: Path) -> list[Path]:
    """Sub-folders in name order (hidden ones skipped); a name with whitespace is refused."""
    return _listable(
        sorted(
            (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
    )


def _frames(folder: Path) -> list[Path]:
    """The ``.jpg`` files of a clip folder in name order; a name with whitespace is refused."""
    return _listable(
        sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix == FRAME_SUFFIX),
            key=lambda p: p.name,
        )
    )


def _listable(found: list[Path]) -> list[Path]:
    for p in found:
        if any(c.isspace() for c in p.name):
            raise FormatError(p, f"a name with whitespace cannot be listed in {LANDMARK_FILE}")
    return found


def _walk(root: Path) -> tuple[list[str], list[int], list[int], list[str], list[str]]:
    """Frame paths, identity and clip index per frame, identity names, clip names."""
    paths, identity, clip, identity_names, clip_names = [], [], [], [], []
    for person in _folders(root):
        clips = _folders(person)
        if not clips:
            raise FormatError(person, "identity folder holds no clip folder")
        for folder in clips:
            frames = [p.name for p in _frames(folder)]
            if not frames:
                raise FormatError(folder, f"empty clip: no <frame>{FRAME_SUFFIX} in it")
            prefix = f"{person.name}/{folder.name}"
            paths += [f"{prefix}/{name}" for name in frames]
            identity += [len(identity_names)] * len(frames)
            clip += [len(clip_names)] * len(frames)
            clip_names.append(prefix)
        identity_names.append(person.name)
    if not paths:
        raise FormatError(root, f"no <identity>/<clip>/<frame>{FRAME_SUFFIX} under the root")
    return paths, identity, clip, identity_names, clip_names
