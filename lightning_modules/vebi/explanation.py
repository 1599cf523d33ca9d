"""VEBI's explanation of an image (thesis section 3.3.2; spec section 5).

For each image: the class c to explain (F's prediction unless given), its response vector x,
and the relevance r = w_c * x (element-wise, W from the interpretation). The top-K entries with
r > 0 are the (layer, filter) pairs shown; each gets a heatmap from the resampled DeconvNet +
guided-backprop walk (``deconv``; ``resample=False`` gives Deconv+GB on the same filters, the
upsampled activation is the third way Tab. 3.1 draws them). The single map for quantitative use
is H = sum_j r_j h_j / sum_j r_j, divided by its max (spec decision 3). An image with fewer than
K positive entries shows fewer pairs (``pairs`` is -1 and ``relevance`` 0 in the empty slots);
one with none gets an all-zero map. The upsampled activation has no map for an FC unit, so it
draws the top-K conv pairs (a decision: the spec restricts it to conv layers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_modules.vebi.deconv import deconv_heatmaps, unit_max
from lightning_modules.vebi.module_walk import ModuleWalk
from lightning_modules.vebi.responses import ResponseIndex, response_vectors
from lightning_modules.vebi.saliency_baselines import upsampled_activation

__all__ = ["Drawing", "Explanation", "combine", "explain", "top_pairs"]

Drawing = Literal["ours", "deconv_gb", "upsampled_activation"]


@dataclass(frozen=True)
class Explanation:
    """The explanation of a batch of B images with K pairs each.

    Attributes:
        classes: (B,) the explained class of each image.
        pairs: (B, K) entries j of x (their layer and filter: ``ResponseIndex.entry``), -1 where
            the image has fewer than K positive entries.
        relevance: (B, K) r_j of those entries (0 in empty slots), in decreasing order.
        heatmaps: (B, K, H, W) one [0, 1] map per pair (zero in empty slots).
        combined: (B, H, W) the r-weighted map, in [0, 1].
    """

    classes: Tensor
    pairs: Tensor
    relevance: Tensor
    heatmaps: Tensor
    combined: Tensor


def top_pairs(relevance: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """The ``top_k`` largest positive entries of each row of ``relevance`` (B, m): (entries
    (B, K) with -1 for missing ones, their values (B, K) with 0 for missing ones)."""
    values, entries = relevance.topk(min(top_k, relevance.shape[1]), dim=1)
    positive = values > 0
    return entries.where(positive, -1), values.where(positive, 0.0)


def combine(heatmaps: Tensor, relevance: Tensor) -> Tensor:
    """H = sum_j r_j h_j / sum_j r_j over the K maps (B, K, H, W), divided by its max."""
    weights = relevance.clamp_min(0)
    total = weights.sum(1).clamp_min(torch.finfo(heatmaps.dtype).tiny)
    return unit_max((heatmaps * weights[..., None, None]).sum(1) / total[:, None, None])


def _drawer(drawing: Drawing, walk: ModuleWalk) -> Callable[[Tensor, str, Tensor], Tensor]:
    """(images (b, ...), layer, filters (b,)) -> maps (b, H, W) for ``drawing``."""
    if drawing == "ours":
        return lambda images, layer, q: deconv_heatmaps(walk, images, layer, q, resample=True)
    if drawing == "deconv_gb":
        return lambda images, layer, q: deconv_heatmaps(walk, images, layer, q, resample=False)
    if drawing == "upsampled_activation":
        return lambda images, layer, q: upsampled_activation(walk, images, layer, q)
    raise ValueError(f"unknown drawing {drawing!r}; choose ours, deconv_gb or upsampled_activation")


@torch.no_grad()
def explain(
    net: nn.Module,
    index: ResponseIndex,
    weights: Tensor,
    images: Tensor,
    classes: Tensor | None = None,
    top_k: int = 5,
    drawing: Drawing = "ours",
) -> Explanation:
    """Explain ``images`` (B, C, H, W) by the top-``top_k`` relevant filters of ``classes``
    (default: F's predictions); ``weights`` (m, C) is the interpretation's W."""
    net = net.eval()
    walk = ModuleWalk.of(net)
    draw = _drawer(drawing, walk)
    x, logits = response_vectors(net, images, index)
    classes = logits.argmax(1) if classes is None else classes.to(images.device)
    relevance = weights.to(x.device, x.dtype).T[classes] * x
    if drawing == "upsampled_activation":  # no spatial map for an FC unit: its conv pairs only
        relevance = relevance * index.pool("only_conv").to(relevance.device)
    pairs, values = top_pairs(relevance, top_k)
    batch, k = pairs.shape
    heatmaps = images.new_zeros(batch, k, *images.shape[-2:])
    layer_of, filter_of = index.layer_of.to(pairs.device), index.filter_of.to(pairs.device)
    for slot in range(k):
        entries = pairs[:, slot]
        layers = layer_of[entries.clamp_min(0)].where(entries >= 0, -1)
        for layer_number in layers[layers >= 0].unique():
            rows = layers == layer_number
            layer = index.layers[int(layer_number)]
            filters = filter_of[entries[rows]]
            heatmaps[rows, slot] = draw(images[rows], layer.source, filters)
    return Explanation(classes, pairs, values, heatmaps, combine(heatmaps, values))
