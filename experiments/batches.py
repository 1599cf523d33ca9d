"""Batched inference for the analyses (OLR, the disentangled AAE): one function over a loader.

Single process, no gradients, a rich progress bar per pass; results are concatenated on the CPU
in loader order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from rich.progress import track
from torch import Tensor, nn
from torch.utils.data import DataLoader

__all__ = ["map_images", "same_outputs"]


@torch.no_grad()
def map_images(
    fn: Callable[[Tensor], Tensor],
    loader: DataLoader,
    device: torch.device,
    description: str,
    progress: bool = True,
) -> Tensor:
    """``fn(batch["image"])`` over every batch of ``loader``, concatenated on the CPU (float32)."""
    outputs = []
    for batch in track(loader, description=description, disable=not progress):
        outputs.append(fn(batch["image"].to(device)).float().cpu())
    if not outputs:
        raise ValueError(f"{description}: the loader holds no images")
    return torch.cat(outputs)


@torch.no_grad()
def same_outputs(
    encoder: nn.Module, loader: DataLoader, reference: Tensor, device: torch.device
) -> bool:
    """Whether ``encoder`` reproduces ``reference``'s first rows on the loader's first batch.

    Tells whether saved embeddings came from these weights (then they can be reused as they are).
    """
    images = next(iter(loader))["image"].to(device)
    out = encoder(images).float().cpu()
    expected = reference[: out.shape[0]]
    return out.shape == expected.shape and torch.allclose(out, expected, rtol=1e-4, atol=1e-5)
