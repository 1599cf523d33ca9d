"""Exemplar sets swapped at test time: the H4 editing set and the other-identity control.

Both wrap a test split (``ExemplarFaces``) and return its items with other exemplars:

- ``ForeignExemplars``: each target's exemplars (and their region boxes and occlusion flags) are
  those of an image of another identity, by a fixed seeded derangement of the split's identities
  (never H4's other identity): the control under which H2 and H4 must fail (the issue's check).
- ``SwappedDetail`` (the twin only; H4): each exemplar is re-rendered with the target's coarse
  identity, another identity's detail code (a derangement of identities) and that exemplar's own
  nuisance (brightness, shift, mouth) from the sidecar, and cropped the way the split crops its
  files (``crop_like``). Adds ``pattern_other``: the target rendered with its own nuisance and the
  other detail, the image whose detail the output should now carry.

Renders are not JPEG-compressed as the twin's files are; ``check_crop`` refuses a crop path whose
render of the target's own codes does not match the split's image (a window or crop this module
does not reproduce).
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.celeba import cut_box
from datamodules.exemplar_sets import ExemplarFaces
from datamodules.formats.exemplar_regions import SIDECAR_FILE
from datamodules.synthetic.exemplar_faces import MANIFEST_FILE, Nuisance, render

__all__ = [
    "CROP_TOLERANCE",
    "ForeignExemplars",
    "RenderCodes",
    "SwappedDetail",
    "check_crop",
    "crop_like",
    "identity_derangement",
    "read_render_codes",
    "twin_seed",
]

#: Largest mean |render - file| ([0, 1]) of the target's own codes that counts as the same crop
#: (JPEG quality 95 moves a pixel by a few grey levels; a wrong crop by far more).
CROP_TOLERANCE = 0.03
DETAIL_SHIFT, FOREIGN_SHIFT = 1, 2  # identity_derangement's shift for H4 and for the control
_EXEMPLAR_KEYS = (
    "exemplars",
    "exemplar_index",
    "exemplar_ids",
    "exemplar_attributes",
    "exemplar_regions",
    "exemplar_occluded",
)


@dataclass(frozen=True)
class RenderCodes:
    """What rendered one twin image: its coarse and detail identities and its nuisance."""

    coarse_id: int
    detail_id: int
    nuisance: Nuisance


def read_render_codes(root: Path) -> dict[str, RenderCodes]:
    """image_id -> codes, from the twin's sidecar ``exemplar_faces.csv`` under ``root``."""
    path = Path(root) / SIDECAR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: H4 re-renders the exemplar twin and needs its sidecar")
    codes = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            nuisance = Nuisance(
                float(row["gain"]), int(row["dy"]), int(row["dx"]), float(row["mouth"])
            )
            codes[row["image_id"]] = RenderCodes(
                int(row["coarse_id"]), int(row["detail_id"]), nuisance
            )
    return codes


def twin_seed(root: Path, default: int) -> int:
    """The seed the twin at ``root`` was written with (its manifest), else ``default``."""
    manifest = Path(root) / MANIFEST_FILE
    return int(json.loads(manifest.read_text())["seed"]) if manifest.is_file() else default


def crop_like(split: ExemplarFaces, full: Tensor) -> Tensor:
    """float (3, S, S) in [0, 1]: the full aligned image ``full`` (uint8 (3, 218, 178)) cut the
    way ``split.image`` cuts its files (its faces' crop box and whatever ``image`` adds), by
    running ``split.image`` on a copy whose reader returns ``full``."""
    faces = copy.copy(split.faces)
    faces.read_crop = lambda i: (
        full if faces.crop is None else cut_box(full, faces.crop, Path("render"))
    )
    view = copy.copy(split)
    view.faces = faces
    return view.image(0)


def _render(
    split: ExemplarFaces, coarse: int, detail: int, nuisance: Nuisance, seed: int
) -> Tensor:
    """(3, S, S) in [-1, 1]: ``render`` of the codes, cut as ``split`` cuts its files."""
    full = torch.from_numpy(render(coarse, detail, nuisance, seed)).permute(2, 0, 1).contiguous()
    return crop_like(split, full) * 2 - 1


def check_crop(split: ExemplarFaces, codes: dict[str, RenderCodes], seed: int) -> float:
    """Mean |render - file| ([0, 1]) of the split's first image; raises above CROP_TOLERANCE."""
    name = split.faces.names[0]
    own = codes[name]
    rendered = (_render(split, own.coarse_id, own.detail_id, own.nuisance, seed) + 1) / 2
    file = split.image(0)
    if rendered.shape != file.shape:
        raise ValueError(
            f"the rendered crop {tuple(rendered.shape)} differs from the split's images "
            f"{tuple(file.shape)}: the split crops in a way crop_like does not reproduce"
        )
    error = float((rendered - file).abs().mean())
    if error > CROP_TOLERANCE:
        raise ValueError(
            f"re-rendering {name} from its sidecar codes gives a crop {error:.3f} away (mean, "
            f"[0, 1]) from the file's: wrong twin seed or a crop crop_like does not reproduce"
        )
    return error


def identity_derangement(split: ExemplarFaces, seed: int, shift: int) -> dict[int, int]:
    """identity -> another identity of the split: the identities in a seeded random order, each
    mapped to the one ``shift`` places on (cyclically). Different shifts never agree, so H4's
    other detail (shift 1) and the control's donors (shift 2) are different identities."""
    identities = split.faces.identities.unique()
    if not 0 < shift < len(identities):
        raise ValueError(
            f"the split has {len(identities)} identities: too few for a derangement by {shift} "
            "(the controls need at least 3)"
        )
    order = identities[torch.randperm(len(identities), generator=_generator(seed))].tolist()
    return {k: order[(p + shift) % len(order)] for p, k in enumerate(order)}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ForeignExemplars(Dataset):
    """``items``' rows with the exemplars of another identity's image (the control).

    Args:
        items: The items to change (the split, or ``SwappedDetail`` over it).
        split: The split whose identities are deranged and whose items give the exemplars.
        seed: Seed of the derangement.
    """

    def __init__(self, items: Dataset, split: ExemplarFaces, seed: int = 0) -> None:
        self.items, self.split = items, split
        other = identity_derangement(split, seed, FOREIGN_SHIFT)
        first = {}
        for i, identity in enumerate(split.faces.identities.tolist()):
            first.setdefault(identity, i)
        self.donor = [first[other[k]] for k in split.faces.identities.tolist()]

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item, donor = dict(self.items[index]), self.split[self.donor[index]]
        item.update({k: donor[k] for k in _EXEMPLAR_KEYS if k in donor})
        return item


class SwappedDetail(Dataset):
    """H4: the split's items with exemplars of the target's coarse look and another's detail.

    Args:
        split: The test split of the twin (with ``regions``).
        codes: ``read_render_codes`` of the twin.
        render_seed: The twin's seed (``twin_seed``).
        seed: Seed of the derangement that picks the other identity's detail.
    """

    def __init__(
        self, split: ExemplarFaces, codes: dict[str, RenderCodes], render_seed: int, seed: int = 0
    ) -> None:
        self.split, self.codes, self.render_seed = split, codes, render_seed
        other = identity_derangement(split, seed, DETAIL_SHIFT)
        detail_of = {}
        for name, identity in zip(split.faces.names, split.faces.identities.tolist(), strict=True):
            detail_of.setdefault(identity, codes[name].detail_id)
        self.other_detail = [detail_of[other[k]] for k in split.faces.identities.tolist()]

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.split[index]
        target = self.codes[item["image_id"]]
        detail = self.other_detail[index]

        def draw(nuisance: Nuisance) -> Tensor:
            return _render(self.split, target.coarse_id, detail, nuisance, self.render_seed)

        item["exemplars"] = torch.stack(
            [draw(self.codes[name].nuisance) for name in item["exemplar_ids"]]
        )
        item["pattern_other"] = draw(target.nuisance)
        if "exemplar_occluded" in item:  # rendered clean
            item["exemplar_occluded"] = torch.zeros_like(item["exemplar_occluded"])
        return item
