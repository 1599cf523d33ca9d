"""Backbones by name: timm classifiers with local ImageNet weights and their normalisation.

Offline first (DESIGN.md, Weights): nothing is fetched from a hub. Pretrained weights come from an
explicit ``weights_file``; ``pretrained=True`` without one fails fast, naming the file to get.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from lightning_modules.components.weights import load_local_weights

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def create_timm_classifier(
    name: str,
    num_classes: int,
    weights_file: str | None = None,
    pretrained: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Build timm model ``name`` with a fresh ``num_classes``-way linear head.

    Args:
        name: timm architecture, e.g. ``"seresnext101_32x4d"`` or ``"resnet10t"``.
        num_classes: Outputs of the new head (logits, no activation).
        weights_file: Local ImageNet weights (``.safetensors`` or torch state dict) for the
            trunk; the file's classifier is dropped, every other key must match.
        pretrained: Require pretrained weights. Hubs are not used, so this needs ``weights_file``.
        model_kwargs: Extra timm constructor arguments (tests shrink widths, e.g. ``channels``).

    Returns:
        The model; ``pretrained_normalization(model)`` gives the mean/std its weights expect.

    Raises:
        ValueError: ``pretrained=True`` without ``weights_file``, or weights that do not match.
    """
    if pretrained and weights_file is None:
        hub = getattr(_default_cfg(name), "hf_hub_id", None) or name
        raise ValueError(
            f"pretrained=True for timm model '{name}' needs a local weights file (hubs are not "
            f"used offline). Download the ImageNet weights of '{hub}' (model.safetensors from "
            f"https://huggingface.co/{hub}) on a machine with internet, e.g. to "
            f"weights/{name}.safetensors, and pass weights_file=<that path>."
        )
    model = timm.create_model(
        name, pretrained=False, num_classes=num_classes, **(model_kwargs or {})
    )
    if weights_file is not None:
        head = model.pretrained_cfg.get("classifier", "fc")
        heads = head if isinstance(head, (list, tuple)) else (head,)
        load_local_weights(model, weights_file, drop_prefixes=tuple(f"{h}." for h in heads))
    return model


def _default_cfg(name: str):
    try:
        return timm.models.get_pretrained_cfg(name)
    except (RuntimeError, KeyError, ValueError):
        return None


def pretrained_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the input normalisation a timm model's pretrained weights expect.

    Falls back to the ImageNet statistics for models without a timm pretrained config.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
