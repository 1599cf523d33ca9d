"""Tab. 3.1 on the an8Flower-style twin: AUC-IoU of every method's heatmaps against the mask of
the discriminative part, per fold, beside the thesis's values; and the artefact comparison.

Methods (the thesis's rows): "Upsam. Act.", "Deconv+GB" and "Ours" draw the mu-lasso's top-K
relevant filters of the predicted class (``vebi.explanation``, the r-weighted single map), the
Grad-CAM rows are standalone (``vebi.saliency_baselines``). Two reference maps that know nothing
of the image's content are scored the same way: uniform noise and a centred Gaussian.

Artefacts (spec section 9, "filters in or below conv3"): for each image, the most relevant conv
filter of its predicted class that has a strided layer between it and the input (conv2 and conv3
of the an8Flower CNN; conv1's two drawings are the same map) is drawn with and without the
resampling fix; the FFT artefact score (``vebi.artefacts``, at the filter's total stride) of ours
must be below Deconv+GB's on at least 90% of the images.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from statistics import mean, stdev

import torch
from torch import Tensor, nn
from tqdm import tqdm

from lightning_modules.vebi.artefacts import artefact_score
from lightning_modules.vebi.deconv import deconv_heatmaps
from lightning_modules.vebi.explanation import Drawing, explain, top_pairs
from lightning_modules.vebi.localization import auc_iou, centred_gaussian, random_heatmaps
from lightning_modules.vebi.module_walk import ModuleWalk
from lightning_modules.vebi.responses import ResponseIndex, response_vectors
from lightning_modules.vebi.saliency_baselines import (
    gradcam,
    gradcam_pp,
    guided_gradcam,
    guided_gradcam_pp,
)

__all__ = ["METHODS", "PAPER_3_1", "evaluate_localization", "pooled", "write_table_3_1"]

#: Tab. 3.1's rows: suite name -> (thesis label, single-6c, double-12c) as mean, std.
PAPER_3_1: dict[str, tuple[str, tuple[float, float], tuple[float, float]]] = {
    "upsampled_activation": ("Upsam. Act.", (16.8, 2.63), (16.1, 1.30)),
    "deconv_gb": ("Deconv+GB", (21.3, 0.77), (21.9, 0.72)),
    "gradcam": ("Grad-CAM", (17.5, 0.25), (14.8, 0.16)),
    "guided_gradcam": ("Guided Grad-CAM", (19.9, 0.61), (19.4, 0.34)),
    "gradcam_pp": ("Grad-CAM++", (15.6, 0.57), (14.6, 0.12)),
    "guided_gradcam_pp": ("Guided Grad-CAM++", (19.6, 0.65), (19.7, 0.27)),
    "ours": ("Ours", (22.5, 0.82), (23.2, 0.60)),
}
METHODS = tuple(PAPER_3_1)
REFERENCES = ("random", "centred_gaussian")
_CLASS_MAPS = {
    "gradcam": gradcam,
    "gradcam_pp": gradcam_pp,
    "guided_gradcam": guided_gradcam,
    "guided_gradcam_pp": guided_gradcam_pp,
}
_FILTER_DRAWINGS: dict[str, Drawing] = {
    "ours": "ours",
    "deconv_gb": "deconv_gb",
    "upsampled_activation": "upsampled_activation",
}


def _strided_conv_entries(walk: ModuleWalk, index: ResponseIndex) -> Tensor:
    """(m,) bool: the entries of conv layers with a strided layer between them and the input
    (a filter of the first conv has none, so both drawings of it are the same map)."""
    strided = [layer.kind == "conv" and walk.jump(layer.source) > 1 for layer in index.layers]
    return torch.tensor(strided)[index.layer_of]


def _artefacts(net: nn.Module, walk: ModuleWalk, index, weights, images) -> tuple[Tensor, Tensor]:
    """Artefact scores (ours, Deconv+GB) of each image's most relevant conv filter behind a
    strided layer."""
    x, logits = response_vectors(net, images, index)
    conv = _strided_conv_entries(walk, index).to(x.device)
    relevance = weights.to(x.device, x.dtype).T[logits.argmax(1)] * x * conv
    entries, _ = top_pairs(relevance, 1)
    ours, plain = torch.full((len(images),), float("nan")), torch.full((len(images),), float("nan"))
    for b, j in enumerate(entries[:, 0].tolist()):
        if j < 0:
            continue
        layer, q = index.entry(j)
        stride = walk.jump(layer.source)
        for out, resample in ((ours, True), (plain, False)):
            heatmap = deconv_heatmaps(walk, images[b : b + 1], layer.source, q, resample)
            out[b] = artefact_score(heatmap, stride)[0]
    return ours, plain


def evaluate_localization(
    net: nn.Module,
    index: ResponseIndex,
    weights: Tensor,
    batches: Iterable[dict[str, Tensor]],
    top_k: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """Per method and reference: AUC-IoU x 100 over the images of ``batches`` (``image``,
    ``mask``); and ``artefact_wins``, the fraction of images whose resampled map has the lower
    artefact score, over the images that have a relevant conv filter behind a strided layer
    (NaN when none has), and ``artefact_images``, how many images that is."""
    net = net.eval().to(device)
    walk = ModuleWalk.of(net)
    per_image: dict[str, list[Tensor]] = {name: [] for name in (*METHODS, *REFERENCES)}
    wins: list[Tensor] = []
    for n, batch in enumerate(tqdm(batches, desc="localization", disable=not progress)):
        images, masks = batch["image"].to(device), batch["mask"].to(device)
        size = images.shape[-2:]
        maps: dict[str, Tensor] = {
            "random": random_heatmaps(len(images), *size, seed=seed + n).to(device),
            "centred_gaussian": centred_gaussian(*size).to(device).expand(len(images), -1, -1),
        }
        for name, drawing in _FILTER_DRAWINGS.items():
            maps[name] = explain(net, index, weights, images, top_k=top_k, drawing=drawing).combined
        for name, cam in _CLASS_MAPS.items():
            maps[name] = cam(walk, images)
        for name, heatmaps in maps.items():
            per_image[name].append(auc_iou(heatmaps, masks)[1].cpu())
        ours, plain = _artefacts(net, walk, index, weights, images)
        kept = ~(ours.isnan() | plain.isnan())
        wins.append((ours[kept] < plain[kept]).float())
    results = {name: float(torch.cat(values).mean()) for name, values in per_image.items()}
    drawn = torch.cat(wins) if wins else torch.zeros(0)
    results["artefact_wins"] = float(drawn.mean()) if len(drawn) else float("nan")
    results["artefact_images"] = float(len(drawn))
    return results


def write_table_3_1(folds: list[dict[str, float]], path: Path, variant: str) -> Path:
    """``method, label, suite_mean, suite_std, folds, paper_mean, paper_std, note`` per row of
    Tab. 3.1 and per reference map (mean and std over the folds evaluated)."""
    column = 1 if variant == "single_6c" else 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["method", "label", "suite_mean", "suite_std", "folds", "paper_mean", "paper_std"]
            + ["note"]
        )
        for name in (*METHODS, *REFERENCES):
            values = [fold[name] for fold in folds]
            spread = stdev(values) if len(values) > 1 else 0.0
            paper = PAPER_3_1.get(name)
            label = paper[0] if paper else name.replace("_", " ")
            cells = [f"{mean(values):.2f}", f"{spread:.2f}", len(values)]
            reference = [*paper[column]] if paper else ["", ""]
            note = (
                "suite twin (procedural an8Flower stand-in): compare the ranking, not the values"
                if paper
                else "reference map, not in the thesis"
            )
            writer.writerow([name, label, *cells, *reference, note])
    return path


def pooled(folds: list[dict[str, float]]) -> dict[str, float]:
    """The folds' numbers together: each AUC-IoU the mean over folds; ``artefact_wins`` over
    every compared image of every fold (a fold with none adds none), NaN when no fold has one."""
    together = {
        key: float(torch.tensor([fold[key] for fold in folds]).mean())
        for key in (*METHODS, *REFERENCES)
    }
    images = sum(fold["artefact_images"] for fold in folds)
    wins = sum(
        fold["artefact_wins"] * fold["artefact_images"] for fold in folds if fold["artefact_images"]
    )
    together["artefact_images"] = float(images)
    together["artefact_wins"] = wins / images if images else float("nan")
    return together
