"""Write OLR's label embeddings of every predicted split: ``embeddings_<split>.pt``.

Consumes ``predict_step`` outputs ``{"embeddings" (B, L, k), "image_id" list[str],
"dataloader_idx" int, optional "attributes" (B, L)}`` (``olr.siamese.OLRSiamese``). The writing is
``callbacks.split_tensors.WriteSplitTensors``'s: under DDP every rank gathers the rows of all
ranks in dataset order and rank zero writes the files, which are those of a one-process run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer

from callbacks import keys
from callbacks.split_tensors import WriteSplitTensors

__all__ = ["WriteEmbeddings", "load_embeddings"]


class WriteEmbeddings(WriteSplitTensors):
    """``<output_dir>/embeddings_<split>.pt`` per predict dataloader.

    Each file holds ``{"embeddings" float32 (N, L, k), "image_id" list[str], "label_names"
    list[str], "attributes" float32 (N, L) (when the batches carry labels)}`` in dataset order
    (loads with ``weights_only=True``). The split names are the DataModule's ``predict_splits``
    (``datamodules.olr.OLRDataModule``: train, test), else ``split<dataloader_idx>``.

    Args:
        output_dir: Folder of the files; default the first logger's folder (the run folder).
    """

    required = ("embeddings", keys.IMAGE_ID)

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(prefix="embeddings", output_dir=output_dir)

    def metadata(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """The module's label names (``OLRSiamese.names``)."""
        return {"label_names": list(getattr(pl_module, "names", lambda: [])())}


def load_embeddings(path: str | Path) -> dict[str, Any]:
    """Read an ``embeddings_<split>.pt`` file written by ``WriteEmbeddings``."""
    return torch.load(path, map_location="cpu", weights_only=True)
