"""The images UST's analysis reads: the matched test pairs, the twin's cross pairs, the train
catalog.

Everything is read once through the run's own ``VitonDataModule`` (its ``data`` section), in file
order, and held in memory as tensors in [-1, 1] (masks in {0, 1}): the analysis works on the
test split, which is small (VITON's 2,032 pairs at 256 x 192 are 1.2 GB in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.progress import track
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["CROSS_KEYS", "TEST_KEYS", "Images", "load_images", "mean_catalog_image"]

#: The tensors of a matched (or cross) pair the analysis keeps.
TEST_KEYS = ("image_a", "mask_a", "context_a", "masked_a", "image_b", "mask_b")
CROSS_KEYS = (*TEST_KEYS, "target", "target_mask")


@dataclass
class Images:
    """Stacked tensors of one split (``tensors[key]``: (N, C, H, W)) and the file names."""

    tensors: dict[str, Tensor]
    persons: list[str]
    items: list[str]

    def __len__(self) -> int:
        return len(self.persons)

    def __getitem__(self, key: str) -> Tensor:
        return self.tensors[key]


def load_images(
    dataset: Dataset, keys: tuple[str, ...], batch_size: int = 64, progress: bool = True
) -> Images:
    """Every row of ``dataset`` (a ``VitonDataModule`` split), in order: the ``keys`` tensors."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    parts: dict[str, list[Tensor]] = {key: [] for key in keys}
    persons: list[str] = []
    items: list[str] = []
    batches = track(loader, description="reading test pairs") if progress else loader
    for batch in batches:
        for key in keys:
            parts[key].append(batch[key])
        persons += list(batch["name_a"])
        items += list(batch["name_b"])
    if not persons:
        raise ValueError("load_images: the split has no pairs")
    return Images({k: torch.cat(v) for k, v in parts.items()}, persons, items)


@torch.no_grad()
def mean_catalog_image(items: Dataset, batch_size: int = 64) -> Tensor:
    """(1, 3, H, W) the mean of every catalog image of ``items`` (``VitonItems``), in [-1, 1]."""
    loader = DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=0)
    total, count = None, 0
    for batch in loader:
        images = batch["image_b"].double()
        total = images.sum(0) if total is None else total + images.sum(0)
        count += images.shape[0]
    if total is None:
        raise ValueError("mean_catalog_image: no catalog items")
    return (total / count).float()[None]
