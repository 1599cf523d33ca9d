"""The frozen Siamese encoder under OLR's later stages (probe, decoder): built, frozen, applied.

The probe and the decoder read embeddings E = S(x) of clean images from the Siamese encoder S
trained in the stage before. Both modules hold S as their submodule ``encoder``, built here from
its typed arguments (the same as ``SiameseEncoder``'s) and filled by ``--run.init_from`` with
``{checkpoint: latest:<siamese run>, source: encoder, target: encoder}``. It stays frozen: no
gradients, eval mode (``lightning_modules.components.frozen``), embeddings computed under
``torch.no_grad``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lightning_modules.components.frozen import freeze
from lightning_modules.olr.encoder import SiameseEncoder

__all__ = ["embed", "frozen_encoder"]


def frozen_encoder(hparams: Mapping[str, Any]) -> SiameseEncoder:
    """A frozen (no grad, eval mode) ``SiameseEncoder`` built from a stage's hyperparameters.

    Reads ``num_labels``, ``embedding_dim``, ``widths`` (None = the encoder's DEFAULT),
    ``convs_per_stage`` and ``embed_act``: the Siamese stage's values, so its weights load.
    """
    widths = hparams["widths"]
    encoder = SiameseEncoder(
        num_labels=hparams["num_labels"],
        embedding_dim=hparams["embedding_dim"],
        convs_per_stage=hparams["convs_per_stage"],
        embed_act=hparams["embed_act"],
        **({} if widths is None else {"widths": tuple(widths)}),
    )
    freeze(encoder)
    return encoder


def embed(encoder: nn.Module, images: Tensor) -> Tensor:
    """E (B, L, k) of ``images`` (B, 3, H, W) in [0, 1], without a graph through the encoder."""
    with torch.no_grad():
        return encoder(images)
