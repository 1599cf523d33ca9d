"""Every part's visible mask for an image of a suite-written an8Flower-like twin, re-rendered.

The layout stores only the discriminative part's mask; the double-12c checks of VEBI (spec vebi.md
section 9 b) also need the other candidate part's (the disc of a leaves class, the leaves of a
disc class). The generator draws image ``idx`` of class ``cls`` from its own seeded stream
(``sample_flower``), so a twin whose manifest (``an8flower.json``) names the seed, size and this
renderer's code hash gives back every part of every image exactly: nothing more is written to
disk, and the format stays as it is. A twin of another renderer version, or a folder without the
manifest (data not written by the suite), cannot be re-rendered; ``PartRenderer.of`` says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.formats.errors import FormatError
from datamodules.synthetic.an8flower import MANIFEST_FILE, PARTS, fingerprint, sample_flower

__all__ = ["PartRenderer"]


class PartRenderer:
    """Re-renders the part masks of the images of one twin folder.

    Args:
        variant: The twin's variant (``single_6c`` or ``double_12c``).
        seed: The seed it was written with.
        size: Its image side.
    """

    def __init__(self, variant: str, seed: int, size: int) -> None:
        self.variant, self.seed, self.size = variant, seed, size

    @classmethod
    def of(cls, folder: str | Path) -> PartRenderer:
        """The renderer of the twin in ``folder`` (a variant folder).

        Raises:
            FormatError: The folder has no manifest of the suite's generator, or its manifest
                names another renderer version (its images may differ from what is drawn now).
        """
        path = Path(folder) / MANIFEST_FILE
        if not path.is_file():
            raise FormatError(
                path,
                "missing: part masks are re-rendered from the suite twin's manifest, so only a "
                "twin written by `make data DATASET=synthetic-an8flower` has them",
            )
        manifest = json.loads(path.read_text())
        keys = ("variant", "per_class", "size", "seed")
        if manifest != fingerprint(*(manifest.get(k) for k in keys)):
            raise FormatError(
                path,
                "was written by another version of datamodules/synthetic/an8flower.py, so its "
                "parts cannot be re-rendered: rewrite the twin (--data.init_args.synthetic=...)",
            )
        return cls(manifest["variant"], manifest["seed"], manifest["size"])

    def masks(self, file: str, parts: Sequence[str]) -> np.ndarray:
        """bool (len(parts), size, size): the visible pixels of each of ``parts`` (names of
        ``PARTS``) in the image ``file`` (``images/<cls>/<idx>.png``, as folds.csv lists it)."""
        unknown = [p for p in parts if p not in PARTS]
        if unknown:
            raise ValueError(f"unknown part(s) {unknown}; the flower's parts are {PARTS}")
        _, cls, name = file.split("/")
        _, masks, _ = sample_flower(
            self.variant, int(cls), int(Path(name).stem), self.seed, self.size
        )
        return np.stack([masks[p] for p in parts])
