"""VEBI's average images (Fig. 3.5; spec section 5, "Interpretation"): what a relevant filter
responds to, for each class it speaks for.

For every relevant entry j = (layer p, filter q) of x and every class c with W[j, c] > 0 (the
relevance threshold of ``lasso.relevant_pairs``, 1e-8): the ``top`` (100) training images of
class c with the highest response strength s^p_q (the L2 norm of the map A^p_q for a conv
filter, |a_q| for an FC unit; x's entry before the per-layer normalisation, spec decision 7);
in each of them the receptive field (``receptive_field``) of the unit at the spatial argmax of
A^p_q, cropped with zeros outside the image; the mean of the crops. An FC unit sees the whole
image, so its average image is the mean of the whole images. Crops are taken from the images as
the net reads them (normalised), so the zero padding is the normalised mean intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightning_modules.vebi.deconv import forward_records
from lightning_modules.vebi.module_walk import ModuleWalk
from lightning_modules.vebi.receptive_field import ReceptiveField, receptive_fields
from lightning_modules.vebi.responses import ResponseIndex, filter_strengths

__all__ = ["AverageImage", "average_images", "crop_fields", "relevant_tiles", "top_images"]


@dataclass(frozen=True)
class AverageImage:
    """One tile of Fig. 3.5: entry ``entry`` of x (``layer``, ``filter``) for class ``cls``
    with weight W[entry, cls] > 0; ``image`` (C, r, r) is the mean of ``count`` crops."""

    entry: int
    layer: str
    kind: str
    filter: int
    cls: int
    weight: float
    count: int
    image: Tensor


def relevant_tiles(weights: Tensor, threshold: float = 1e-8) -> list[tuple[int, int, float]]:
    """(entry j, class c, W[j, c]) for every W[j, c] > ``threshold`` (``relevant_pairs``'s
    eps), by entry then class."""
    entries, classes = (weights > threshold).nonzero(as_tuple=True)
    return [(int(j), int(c), float(weights[j, c])) for j, c in zip(entries, classes, strict=True)]


def top_images(strengths: Tensor, labels: Tensor, cls: int, top: int = 100) -> Tensor:
    """Indices of the ``top`` images of class ``cls`` with the largest ``strengths`` (n,), in
    decreasing order (ties: the lower index first); fewer when the class has fewer images."""
    members = (labels == cls).nonzero()[:, 0]
    order = strengths[members].argsort(descending=True, stable=True)
    return members[order[:top]]


def crop_fields(images: Tensor, field: ReceptiveField, units: Tensor) -> Tensor:
    """The receptive field of unit ``units[b]`` = (row, col) of A in ``images[b]`` (B, C, H, W),
    as (B, C, r_rows, r_cols), zero outside the image."""
    batch, _, height, width = images.shape
    offsets = [field.start[a] - (field.size[a] - 1) / 2 for a in range(2)]
    first = [(units[:, a] * field.jump[a] + round(offsets[a])).to(images.device) for a in range(2)]
    rows = first[0][:, None] + torch.arange(field.size[0], device=images.device)
    cols = first[1][:, None] + torch.arange(field.size[1], device=images.device)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None]
    b = torch.arange(batch, device=images.device)[:, None, None]
    picked = images[b, :, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None]]
    return (picked * inside[..., None]).permute(0, 3, 1, 2)  # (B, r, r, C) -> (B, C, r, r)


@torch.no_grad()
def _strengths(
    walk: ModuleWalk, index: ResponseIndex, entries: list[int], loader: DataLoader, device
) -> tuple[Tensor, Tensor]:
    """s of ``entries`` for every image of ``loader`` (n, E), and the labels (n,)."""
    ends = [walk.readout(index.entry(j)[0].source) for j in entries]
    strengths, labels = [], []
    for batch in loader:
        records = forward_records(walk.modules[: max(ends) + 1], batch["image"].to(device))
        layers = {end: filter_strengths(records[end + 1]) for end in set(ends)}  # s^p per layer
        columns = [layers[end][:, index.entry(j)[1]] for j, end in zip(entries, ends, strict=True)]
        strengths.append(torch.stack(columns, 1).cpu())
        labels.append(batch["label"])
    return torch.cat(strengths), torch.cat(labels)


def _average(walk: ModuleWalk, end: int, field: ReceptiveField, q: int, images: Tensor) -> Tensor:
    """The mean over ``images`` of the field at the argmax of A_q (the whole image for FC)."""
    if field.whole_image:
        return images.mean(0)
    activation = forward_records(walk.modules[: end + 1], images)[-1][:, q]
    peak = activation.flatten(1).argmax(1)
    units = torch.stack([peak // activation.shape[-1], peak % activation.shape[-1]], 1)
    return crop_fields(images, field, units).mean(0)


@torch.no_grad()
def average_images(
    net: nn.Module,
    index: ResponseIndex,
    weights: Tensor,
    dataset: Dataset,
    top: int = 100,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> list[AverageImage]:
    """Fig. 3.5's tiles for the interpretation's ``weights`` (m, C) over ``dataset`` (items with
    ``image`` and ``label``, the training split), one per relevant (entry, class) pair."""
    walk = ModuleWalk.of(net.eval())
    tiles = relevant_tiles(weights)
    if not tiles:
        return []
    entries = sorted({j for j, _, _ in tiles})
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    strengths, labels = _strengths(walk, index, entries, loader, device)
    column = {j: k for k, j in enumerate(entries)}
    fields = receptive_fields(walk)
    found = []
    for j, c, weight in tiles:
        layer, q = index.entry(j)
        chosen = top_images(strengths[:, column[j]], labels, c, top)
        if not len(chosen):
            continue
        images = torch.stack([dataset[int(i)]["image"] for i in chosen]).to(device)
        end = walk.readout(layer.source)
        image = _average(walk, end, fields[end], q, images).cpu()
        found.append(AverageImage(j, layer.source, layer.kind, q, c, weight, len(chosen), image))
    return found
