"""VEBI's filter-wise response vector x (thesis section 3.3.1) and the table behind it.

For an image, every included layer l gives one number per filter q: the L2 norm of the filter's
output map for a Conv2d (s_q = sqrt(sum_hw A_q^2)), the absolute value for a Linear unit (a 1x1
"filter"). Each layer's block is divided by its L1 norm (+1e-12), so every block sums to 1 and
long layers do not outweigh short ones; x is the blocks concatenated, m = sum_l C_l entries.

Which outputs are read (spec decision 1): every Conv2d and every Linear, at the output of the
ReLU that follows it (across BatchNorm, LRN and Dropout, as the heatmap walk reads a layer; the
layer itself when none does), except the last Linear (the class scores). ``include_pool`` adds
the pooling layers' outputs, as MatConvNet counted them as layers (their filters are the
channels of the conv before them). Layers are found in module registration order, which is the
forward order of the ``nn.Sequential`` nets VEBI explains; x needs only forward hooks, so it
does not ask the heatmap walk's stricter contract (``module_walk``).

:class:`ResponseIndex` maps entry j of x to (layer, filter q) and gives the pools: "All" (every
layer) and "OnlyConv" (the conv layers). :func:`response_vectors` computes x for a batch with
forward hooks that reduce each map as it is produced (no activation is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from tqdm import tqdm

from lightning_modules.vebi.module_walk import PASS_THROUGH

__all__ = [
    "POOLING",
    "ResponseIndex",
    "ResponseLayer",
    "Pool",
    "filter_strengths",
    "find_response_layers",
    "read_hooks",
    "response_vectors",
    "responses_of",
]

Kind = Literal["conv", "fc", "pool"]
Pool = Literal["all", "only_conv"]
POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_EPS = 1e-12


@dataclass(frozen=True)
class ResponseLayer:
    """One included layer: ``source`` names it (the Conv2d, Linear or pooling module), ``read``
    is the module whose output is measured (its ReLU where it has one)."""

    source: str
    read: str
    kind: Kind
    width: int


def _leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in net.named_modules() if not any(m.children())]


def _readout(leaves: list[tuple[str, nn.Module]], i: int) -> str:
    """The first ReLU after weight layer i across BatchNorm / LRN / Dropout, else layer i (the
    heatmap walk's rule, ``ModuleWalk.readout``)."""
    for name, module in leaves[i + 1 :]:
        if isinstance(module, nn.ReLU):
            return name
        if not isinstance(module, PASS_THROUGH):
            break
    return leaves[i][0]


def find_response_layers(net: nn.Module, include_pool: bool = False) -> list[ResponseLayer]:
    """The layers that enter x, in forward order (see the module docstring)."""
    leaves = _leaves(net)
    linear = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Linear)]
    class_layer = linear[-1] if linear else None
    layers: list[ResponseLayer] = []
    channels = None  # the filters a pooling layer carries: the last conv's
    for i, (name, module) in enumerate(leaves):
        if isinstance(module, (nn.Conv2d, nn.Linear)) and i != class_layer:
            read = _readout(leaves, i)
            conv = isinstance(module, nn.Conv2d)
            width = module.out_channels if conv else module.out_features
            layers.append(ResponseLayer(name, read, "conv" if conv else "fc", width))
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        elif include_pool and isinstance(module, POOLING) and channels is not None:
            layers.append(ResponseLayer(name, name, "pool", channels))
    if not layers:
        kinds = sorted({type(m).__name__ for _, m in leaves})
        raise ValueError(
            f"{type(net).__name__} has no Conv2d or hidden Linear layer to read responses from "
            f"(its leaf modules: {', '.join(kinds)})"
        )
    return layers


class ResponseIndex:
    """Entry j of x <-> (layer, filter q); the layer blocks' offsets; the pools."""

    def __init__(self, layers: list[ResponseLayer]) -> None:
        self.layers = tuple(layers)
        widths = torch.tensor([layer.width for layer in layers])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), widths.cumsum(0)])
        self.size = int(self.offsets[-1])
        #: the layer number of every entry, (m,)
        self.layer_of = torch.repeat_interleave(torch.arange(len(layers)), widths)
        #: the filter number within its layer of every entry, (m,)
        self.filter_of = torch.arange(self.size) - self.offsets[self.layer_of]

    @classmethod
    def of(cls, net: nn.Module, include_pool: bool = False) -> ResponseIndex:
        return cls(find_response_layers(net, include_pool))

    def pool(self, pool: Pool) -> torch.Tensor:
        """(m,) bool: the entries of ``pool`` ("all": every layer; "only_conv": Conv2d ones)."""
        if pool == "all":
            return torch.ones(self.size, dtype=torch.bool)
        if pool == "only_conv":
            conv = torch.tensor([layer.kind == "conv" for layer in self.layers])
            return conv[self.layer_of]
        raise ValueError(f"unknown pool {pool!r}; choose 'all' or 'only_conv'")

    def entry(self, j: int) -> tuple[ResponseLayer, int]:
        """The layer and filter of entry ``j``."""
        return self.layers[int(self.layer_of[j])], int(self.filter_of[j])

    def counts(self, selected: torch.Tensor) -> dict[str, int]:
        """Selected entries per layer (by source name), for (m,) bool ``selected``."""
        per_layer = torch.bincount(self.layer_of[selected.cpu()], minlength=len(self.layers))
        return {layer.source: int(n) for layer, n in zip(self.layers, per_layer, strict=True)}


def filter_strengths(output: torch.Tensor) -> torch.Tensor:
    """s of every filter of a layer output: (B, C, H, W) -> per-filter L2 norm (B, C);
    (B, C) -> |a| (B, C)."""
    if output.dim() == 4:
        return output.flatten(2).norm(dim=2)
    if output.dim() == 2:
        return output.abs()
    raise ValueError(f"a response layer gave an output of shape {tuple(output.shape)}")


@contextmanager
def read_hooks(
    net: nn.Module, index: ResponseIndex, hooks: dict[int, Callable]
) -> Iterator[nn.Module]:
    """``net`` with ``hooks[k]`` as a forward hook on layer k's read module, inside the block."""
    modules = dict(net.named_modules())
    handles = [modules[index.layers[k].read].register_forward_hook(h) for k, h in hooks.items()]
    try:
        yield net
    finally:
        for handle in handles:
            handle.remove()


def _recorder(found: list[torch.Tensor | None], k: int) -> Callable:
    def hook(_module, _inputs, output) -> None:
        found[k] = filter_strengths(output.detach())

    return hook


@torch.no_grad()
def response_vectors(
    net: nn.Module, images: torch.Tensor, index: ResponseIndex
) -> tuple[torch.Tensor, torch.Tensor]:
    """x for each image (B, m), float32, each layer block summing to 1; and the net's outputs.

    ``net`` runs as it is (put it in eval mode first: the spec reads x in eval mode).
    """
    found: list[torch.Tensor | None] = [None] * len(index.layers)
    with read_hooks(net, index, {k: _recorder(found, k) for k in range(len(index.layers))}):
        logits = net(images)
    missing = [index.layers[k].read for k, s in enumerate(found) if s is None]
    if missing:
        raise RuntimeError(f"the forward pass did not reach {', '.join(missing)}")
    blocks = [s.float() / (s.float().sum(1, keepdim=True) + _EPS) for s in found]
    return torch.cat(blocks, dim=1), logits


def _image(batch: dict) -> torch.Tensor:
    return batch["image"]


def _label(batch: dict) -> torch.Tensor:
    return batch["label"]


def responses_of(
    net: nn.Module,
    index: ResponseIndex,
    batches: Iterable[dict],
    device: str | torch.device = "cpu",
    images: Callable[[dict], torch.Tensor] = _image,
    labels: Callable[[dict], torch.Tensor] = _label,
    progress: bool | None = False,
    desc: str = "responses",
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, m, on the CPU) and the labels of every image of ``batches``, in order; ``images``
    and ``labels`` read them from a batch. ``progress``: a tqdm bar (None: on a terminal only)."""
    disable = None if progress is None else not progress
    xs, found = [], []
    for batch in tqdm(batches, desc=desc, disable=disable, leave=False):
        x, _ = response_vectors(net, images(batch).to(device), index)
        xs.append(x.cpu())
        found.append(labels(batch))
    return torch.cat(xs), torch.cat(found)
