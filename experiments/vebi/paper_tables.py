"""VEBI's feature counts and Fig. 3.4 (thesis ch. 3) beside the suite's numbers, as CSV and a bar
chart.

The thesis gives the number of relevant features selected with mu = 10 for its four datasets as
"All | OnlyConv" pairs, 92|101, 46|28, 104|111 and 248|180, in the panel order of Fig. 3.4, which
the text does not name (likely MNIST, Fashion144k, ImageNet-cats, ImageNet: spec section 6).
``feature_counts.csv`` lists the suite's counts per run (fold), pool and layer, with the thesis's
pair of the first panel beside the totals, marked as an assumed match for MNIST. Fig. 3.4 has
bars and no numbers (the text claims the ordering drop(All) > drop(OnlyConv) > drop(Random));
``fig_3_4.csv`` holds the suite's mCA per set (random sets: mean and std over their draws; the
mean over folds where there are several) and ``fig_3_4.png`` the bars.
"""

from __future__ import annotations

import csv
from pathlib import Path
from statistics import mean, stdev

import torch

from lightning_modules.vebi.feature_importance import set_family
from lightning_modules.vebi.responses import ResponseIndex

__all__ = ["PAPER_COUNTS", "plot_fig_3_4", "write_feature_counts", "write_fig_3_4"]

#: (All, OnlyConv) relevant-feature counts of Fig. 3.4's panels, in the thesis's order.
PAPER_COUNTS = ((92, 101), (46, 28), (104, 111), (248, 180))
#: Fig. 3.4's sets, in the thesis's bar order, with their labels.
SETS = {
    "original": "Original",
    "all": "All",
    "only_conv": "OnlyConv",
    "random_all": "Random (as All)",
    "random_only_conv": "Random (as OnlyConv)",
}


def write_feature_counts(
    index: ResponseIndex, selections: dict[str, dict[str, torch.Tensor]], path: Path, dataset: str
) -> Path:
    """Per run (a fold), pool and layer: the relevant filters of the union over classes, and
    the totals beside the thesis's count. ``selections``: run name -> pool -> (m,) bool."""
    paper = dict(zip(("all", "only_conv"), PAPER_COUNTS[0], strict=True))
    note = (
        "thesis: first panel of Fig. 3.4, assumed MNIST (the text does not name it)"
        if dataset == "mnist"
        else f"thesis has no {dataset} count; MNIST's (first panel) shown for scale"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["run", "pool", "layer", "kind", "filters", "selected", "paper", "note"])
        for run, selected in selections.items():
            for pool, chosen in selected.items():
                counts = index.counts(chosen)
                for layer in index.layers:
                    if pool == "all" or layer.kind == "conv":
                        row = [run, pool, layer.source, layer.kind, layer.width]
                        writer.writerow(row + [counts[layer.source], "", ""])
                total = [run, pool, "total", "", int(index.pool(pool).sum()), int(chosen.sum())]
                writer.writerow(total + [paper.get(pool, ""), note])
    return path


def _summary(mca: dict[str, float], name: str) -> tuple[float, float, int]:
    values = [mca[k] for k in set_family(mca, name)]
    spread = stdev(values) if len(values) > 1 else 0.0
    return mean(values), spread, len(values)


def write_fig_3_4(mca: dict[str, float], path: Path) -> Path:
    """``set, label, mca_mean, mca_std, draws, drop`` (mCA in percent) per Fig. 3.4 set found."""
    original = mca["original"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["set", "label", "mca_mean", "mca_std", "draws", "drop"])
        for name, label in SETS.items():
            value, spread, count = _summary(mca, name)
            if count:
                drop = original - value
                writer.writerow(
                    [name, label, f"{100 * value:.2f}", f"{100 * spread:.2f}", count]
                    + [f"{100 * drop:.2f}"]
                )
    return path


def plot_fig_3_4(mca: dict[str, float], path: Path, title: str) -> Path | None:
    """Fig. 3.4's bars: mCA per set, the random sets with their std over draws as error bars.
    None (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [n for n in SETS if _summary(mca, n)[2]]
    values = [100 * _summary(mca, n)[0] for n in names]
    errors = [100 * _summary(mca, n)[1] for n in names]
    colours = ["tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:olive"]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar(range(len(names)), values, yerr=errors, color=colours[: len(names)], capsize=4)
    axis.set_xticks(range(len(names)), [SETS[n] for n in names], rotation=20)
    axis.set_ylabel("mean class accuracy (%)")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
