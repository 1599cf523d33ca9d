"""Phi_ID's substitute for face hallucination: a CelebA attribute classifier's penultimate features.

The thesis's Phi_ID (the penultimate layer of Albanie et al.'s face-emotion model) is not
available; spec ``hallucination`` section 3 substitutes ``id_net: celeba_attr``: a network the
suite trains on the CelebA train split's 40 attributes at 128 px (a ``FaceAttributeClassifier``
run of ``experiments/exemplar_sr/celeba_attr_phi_id.yaml``), frozen, read at its pooled features
before the linear head. ``load_identity_features(path)`` rebuilds it from that run's Lightning
checkpoint: the network from the model's hyperparameters and weights, the input it was trained
on (side, normalisation, crop) from the DataModule's hyperparameters stored beside them.

``IdentityFeatures`` takes face images in [-1, 1] (the exemplar DataModule's 128 px crop, or G_S's
2 H_LR output) of any size, bilinearly resizes them to the classifier's side and normalises them as
its DataModule did; ``distance`` is L_p's second term, the mean squared difference of the features
(spec section 4, Eq. 6.3). It stays in eval mode (``train()`` does not change that) and has no
trainable parameters; gradients still flow through it to the images.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.images import NORMALIZATIONS
from lightning_modules.components.backbones import create_backbone

__all__ = ["PRODUCE_COMMAND", "IdentityFeatures", "IdentityWeightsError", "load_identity_features"]

#: The run whose checkpoint ``id_weights`` names.
PRODUCE_COMMAND = "make experiment NAME=exemplar_sr/celeba_attr_phi_id"
#: The crop of the exemplar DataModule's faces, which the classifier must have been trained on.
CROP = "face128"


class IdentityWeightsError(FileNotFoundError):
    """``id_weights`` is missing or is not a usable classifier checkpoint; says how to get one."""


class IdentityFeatures(nn.Module):
    """Images (B, 3, h, w) in [-1, 1] -> penultimate features (B, D) of a frozen classifier.

    Args:
        network: A timm classifier (``forward_features`` and ``forward_head(pre_logits=True)``).
        image_size: The side it was trained at; inputs are resized to it (bilinear).
        mean: Per-channel mean its [0, 1] inputs had subtracted.
        std: Per-channel std they were divided by.
    """

    def __init__(
        self,
        network: nn.Module,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__()
        if not (hasattr(network, "forward_features") and hasattr(network, "forward_head")):
            raise ValueError(
                f"IdentityFeatures needs a timm classifier, got {type(network).__name__}"
            )
        self.network = network.requires_grad_(False).eval()
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> Self:
        """Always eval: a frozen feature extractor (no batch-norm statistics updates)."""
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, h, w) in [-1, 1] -> (B, D)."""
        x = (images + 1) / 2
        if x.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.network.forward_head(self.network.forward_features(x), pre_logits=True)

    def distance(self, images: Tensor, target: Tensor) -> Tensor:
        """Mean squared difference of the features of ``images`` and ``target`` (a scalar)."""
        return F.mse_loss(self(images), self(target))


def load_identity_features(path: str | Path | None) -> IdentityFeatures:
    """``IdentityFeatures`` of the ``FaceAttributeClassifier`` checkpoint at ``path``.

    Raises:
        IdentityWeightsError: ``path`` is None or missing, or the checkpoint lacks what is needed
            (a classifier's hyperparameters and weights, its DataModule's input settings on the
            exemplar crop); the message names the file and the command that writes one.
    """
    if path is None or not Path(path).is_file():
        raise IdentityWeightsError(_missing(path))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = _section(checkpoint, "hyper_parameters", path)
    data = _section(checkpoint, "datamodule_hyper_parameters", path)
    if "model_name" not in model or "num_attributes" not in model:
        raise IdentityWeightsError(f"{path}: not a FaceAttributeClassifier checkpoint. {_how()}")
    if data.get("crop") != CROP or "image_size" not in data:
        raise IdentityWeightsError(
            f"{path}: the classifier was trained on crop={data.get('crop')!r}, not the exemplar "
            f"faces' {CROP!r} (or its DataModule recorded no image_size). {_how()}"
        )
    network = create_backbone(
        model["model_name"],
        num_classes=model["num_attributes"],
        model_kwargs=model.get("model_kwargs"),
    )
    prefix = "model."  # FaceAttributeClassifier.model
    state = checkpoint["state_dict"]
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    network.load_state_dict(state)
    mean, std = NORMALIZATIONS[data.get("normalize", "imagenet")]
    return IdentityFeatures(network, int(data["image_size"]), mean, std)


def _section(checkpoint: Any, key: str, path: str | Path) -> Mapping[str, Any]:
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get(key), Mapping):
        raise IdentityWeightsError(f"{path}: a Lightning checkpoint without {key}. {_how()}")
    return checkpoint[key]


def _how() -> str:
    return (
        f"Train the Phi_ID network with `{PRODUCE_COMMAND}` and pass its checkpoint as "
        "--model.init_args.id_weights=runs/exemplar_sr/celeba_attr_phi_id/<time>/checkpoints/"
        "<best>.ckpt"
    )


def _missing(path: str | Path | None) -> str:
    where = "no id_weights given" if path is None else f"id_weights file {path} not found"
    return f"id_net='celeba_attr' reads an attribute classifier's checkpoint: {where}. {_how()}"
