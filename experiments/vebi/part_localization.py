"""The double-12c localization checks of VEBI (spec vebi.md section 9 b) on the an8Flower twin.

A double-12c class is (part, hue) with the part the disc or the leaves; the other candidate part
of an image takes a nuisance colour. The DataModule's ``part_masks`` (B, P, H, W) give the
visible pixels of every candidate part. Both checks read the suite's explanation (``ours``: the
r-weighted map of the mu-lasso's top-K relevant filters) and the fraction of its mass in each
part (``vebi.localization``):

- part mass: the map of the predicted class holds more mass on the image's true part than on the
  other candidate part;
- part switch: the same image explained as each part's class of the image's hue (the ground
  truth's hue: (disc, h) and (leaves, h)); the mass moves accordingly when each map holds more
  mass on its own class's part than the other map does, i.e. the leaves' lead over the disc
  (leaves' mass minus the disc's) is larger explaining (leaves, h) than explaining (disc, h).
  An image whose map of either class is all zero (no positive relevance) does not count as moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from datamodules.formats.an8flower import ClassRow
from lightning_modules.vebi.explanation import explain
from lightning_modules.vebi.localization import part_mass_wins, part_masses, part_switch_moves
from lightning_modules.vebi.responses import ResponseIndex

__all__ = ["PART_KEYS", "evaluate_parts", "pooled_parts", "same_hue_classes"]

#: The fractions ``evaluate_parts`` returns, pooled over images by ``pooled_parts``.
PART_KEYS = ("part_mass_wins", "part_switch_moves", "part_mass_true", "part_mass_other")


def same_hue_classes(classes: Sequence[ClassRow], parts: Sequence[str]) -> Tensor:
    """long (C, P): for each class, the class of each of ``parts`` with its colour."""
    by_key = {(row.part, row.colour): row.cls for row in classes}
    missing = [(p, r.colour) for r in classes for p in parts if (p, r.colour) not in by_key]
    if missing:
        raise ValueError(f"no class for the (part, colour) pairs {sorted(set(missing))}")
    return torch.tensor([[by_key[(p, row.colour)] for p in parts] for row in classes])


@torch.no_grad()
def evaluate_parts(
    net: nn.Module,
    index: ResponseIndex,
    weights: Tensor,
    batches: Iterable[dict[str, Tensor]],
    same_hue: Tensor,
    top_k: int = 5,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """Over the images of ``batches`` (``image``, ``label``, ``part_masks``): the fraction whose
    predicted class's map wins the part mass (``part_mass_wins``) and whose maps move with the
    explained class (``part_switch_moves``), the mean mass fraction on the true part and on the
    other candidate parts (``part_mass_true``, ``part_mass_other``), ``part_images`` and
    ``part_switch_empty`` (images with an all-zero map for one of the switched classes)."""
    net = net.eval().to(device)
    same_hue = same_hue.to(device)
    wins, moves, true, other, empty = [], [], [], [], []
    for batch in tqdm(batches, desc="part masses", disable=not progress):
        images, labels = batch["image"].to(device), batch["label"].to(device)
        parts = batch["part_masks"].to(device)
        true_part = (same_hue[labels] == labels[:, None]).int().argmax(1)
        masses = part_masses(explain(net, index, weights, images, top_k=top_k).combined, parts)
        wins.append(part_mass_wins(masses, true_part))
        own = masses.gather(1, true_part[:, None])[:, 0]
        true.append(own)
        other.append((masses.sum(1) - own) / max(masses.shape[1] - 1, 1))
        switched = torch.stack(
            [
                part_masses(explain(net, index, weights, images, classes, top_k).combined, parts)
                for classes in same_hue[labels].T  # each part's class of the image's hue
            ],
            1,
        )  # (B, P explained, P parts)
        moves.append(part_switch_moves(switched))
        empty.append((switched.sum(2) == 0).any(1))
    columns = {"part_mass_wins": wins, "part_switch_moves": moves}
    columns |= {"part_mass_true": true, "part_mass_other": other, "part_switch_empty": empty}
    results = {key: float(torch.cat(v).double().mean()) for key, v in columns.items()}
    results["part_switch_empty"] = float(torch.cat(empty).sum())
    results["part_images"] = float(len(torch.cat(wins)))
    return results


def pooled_parts(folds: list[dict[str, float]]) -> dict[str, float]:
    """The folds' part numbers over every image of every fold (weighted by ``part_images``)."""
    images = sum(fold["part_images"] for fold in folds)
    together = {
        key: sum(fold[key] * fold["part_images"] for fold in folds) / images for key in PART_KEYS
    }
    together["part_images"] = float(images)
    together["part_switch_empty"] = float(sum(fold["part_switch_empty"] for fold in folds))
    return together
