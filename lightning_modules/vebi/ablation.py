"""Filter ablation for VEBI's feature-importance test (thesis Fig. 3.4, spec section 6).

Ablating a set of (layer, filter) entries sets their outputs to zero where x reads them (the
post-ReLU output: a conv channel or an FC unit), through forward hooks, so the rest of the net
sees the ablated signal. The random baselines draw, for every layer, as many filters as the
relevant set holds there, uniformly from that layer (spec decision 8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from lightning_modules.vebi.responses import ResponseIndex, read_hooks

__all__ = ["ablated", "matched_random_selection"]


@contextmanager
def ablated(net: nn.Module, index: ResponseIndex, selected: torch.Tensor) -> Iterator[nn.Module]:
    """``net`` with the outputs of the (m,) bool ``selected`` entries zeroed, inside the block."""
    if selected.shape != (index.size,) or selected.dtype != torch.bool:
        raise ValueError(
            f"selected must be a bool tensor of shape ({index.size},), got "
            f"{selected.dtype} {tuple(selected.shape)}"
        )
    hooks = {}
    for k in range(len(index.layers)):
        entries = selected[int(index.offsets[k]) : int(index.offsets[k + 1])].cpu()
        if entries.any():
            hooks[k] = _zeroing((~entries).float())
    with read_hooks(net, index, hooks):
        yield net


def _zeroing(keep: torch.Tensor) -> Callable:
    def hook(_module, _inputs, output):
        shape = (1, -1) + (1,) * (output.dim() - 2)
        return output * keep.to(output.device, output.dtype).view(shape)

    return hook


def matched_random_selection(
    index: ResponseIndex, selected: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """(m,) bool: per layer, as many entries as ``selected`` holds there, drawn uniformly from
    that layer's filters without replacement."""
    drawn = torch.zeros(index.size, dtype=torch.bool)
    for k, count in enumerate(index.counts(selected).values()):
        if count:
            start, width = int(index.offsets[k]), index.layers[k].width
            drawn[start + torch.randperm(width, generator=generator)[:count]] = True
    return drawn
