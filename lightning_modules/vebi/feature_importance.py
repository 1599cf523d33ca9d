"""VEBI's feature-importance test (thesis Fig. 3.4; spec section 6): the mean class accuracy
(mCA) of F on the test images with the relevant filters ablated, against random filters.

Sets, each ablated alone (``ablation.ablated``): ``original`` (none); ``all`` and ``only_conv``
(the relevant entries of each pool's interpretation); ``random_all`` and ``random_only_conv``
(``draws`` sets with the same per-layer counts as ``all`` / ``only_conv``, drawn uniformly from
those layers, spec decision 8). mCA is torchmetrics' macro accuracy (the mean over classes of
per-class accuracy). The test images are read once; every set is evaluated on each batch.
The expected ordering (paper): drop(All) > drop(OnlyConv) > drop(Random).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from tqdm import tqdm

from lightning_modules.vebi.ablation import ablated, matched_random_selection
from lightning_modules.vebi.responses import ResponseIndex

__all__ = ["AblationSets", "ablation_sets", "ablation_study", "set_family"]


def set_family(names: Iterable[str], name: str) -> list[str]:
    """Of ``names`` (sets, or the keys of ``ablation_study``'s result): the set ``name`` itself,
    or its draws ``name_0``, ``name_1``, ... for a random one."""
    names = list(names)
    if name in names:
        return [name]
    return [k for k in names if k.rsplit("_", 1)[0] == name]


@dataclass(frozen=True)
class AblationSets:
    """Named (m,) bool selections: one per set, ``random_<pool>_<d>`` for the draws."""

    selections: dict[str, Tensor]

    def family(self, name: str) -> list[str]:
        """The set ``name`` itself, or its draws ``name_0``, ``name_1``, ... for a random one."""
        return set_family(self.selections, name)


def ablation_sets(
    index: ResponseIndex, relevant: Mapping[str, Tensor], draws: int = 10, seed: int = 0
) -> AblationSets:
    """``original``, each pool's relevant set, and ``draws`` per-layer-matched random sets of
    each (``relevant``: pool name -> (m,) bool)."""
    generator = torch.Generator().manual_seed(seed)
    selections = {"original": torch.zeros(index.size, dtype=torch.bool)}
    for pool, selected in relevant.items():
        selections[pool] = selected.bool().cpu()
        for d in range(draws):
            selections[f"random_{pool}_{d}"] = matched_random_selection(
                index, selections[pool], generator
            )
    return AblationSets(selections)


@torch.no_grad()
def ablation_study(
    net: nn.Module,
    index: ResponseIndex,
    batches: Iterable[dict[str, Tensor]],
    sets: AblationSets,
    num_classes: int,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """mCA (in [0, 1]) of ``net`` under each set of ``sets`` over ``batches`` (``image``,
    ``label``). ``net`` is put in eval mode."""
    net = net.eval().to(device)
    metrics = {
        name: MulticlassAccuracy(num_classes, average="macro").to(device)
        for name in sets.selections
    }
    for batch in tqdm(batches, desc="ablation", disable=not progress, leave=False):
        images, labels = batch["image"].to(device), batch["label"].to(device)
        for name, selected in sets.selections.items():
            with ablated(net, index, selected):
                metrics[name].update(net(images), labels)
    return {name: float(metric.compute()) for name, metric in metrics.items()}
