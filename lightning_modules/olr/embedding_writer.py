"""Write OLR's label embeddings of every predicted split: ``embeddings_<split>.pt``.

Consumes ``predict_step`` outputs ``{"embeddings" (B, L, k), "image_id" list[str],
"dataloader_idx" int, optional "attributes" (B, L)}`` (``olr.siamese.OLRSiamese``). Under DDP
every rank gathers the rows of all ranks in dataset order (``callbacks.gather``) and rank zero
writes the files, which are those of a one-process run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from callbacks.gather import gather_items, gather_rows
from callbacks.panels import local_log_dir

__all__ = ["WriteEmbeddings", "load_embeddings"]


class WriteEmbeddings(BasePredictionWriter):
    """``<output_dir>/embeddings_<split>.pt`` per predict dataloader.

    Each file holds ``{"embeddings" float32 (N, L, k), "image_id" list[str], "label_names"
    list[str], "attributes" float32 (N, L) (when the batches carry labels)}`` in dataset order
    (loads with ``weights_only=True``). The split names are the DataModule's ``predict_splits``
    (``datamodules.olr.OLRDataModule``: train, test), else ``split<dataloader_idx>``.

    Args:
        output_dir: Folder of the files; default the first logger's folder (the run folder).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self._rows: dict[int, dict[str, list[Any]]] = {}

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = {}

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        embeddings = prediction["embeddings"].detach().float().cpu()
        ids = [str(i) for i in prediction["image_id"]]
        if len(ids) != embeddings.shape[0]:
            raise ValueError(f"{len(ids)} image ids for {embeddings.shape[0]} embeddings")
        rows = self._rows.setdefault(dataloader_idx, {"embeddings": [], "ids": [], "labels": []})
        rows["embeddings"].append(embeddings)
        rows["ids"].extend(ids)
        if "attributes" in prediction:
            rows["labels"].append(prediction["attributes"].detach().float().cpu())

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        splits = self.split_names(trainer)
        shape = tuple(pl_module.embedding_shape)
        out_dir = Path(self.output_dir or local_log_dir(trainer) or trainer.default_root_dir)
        names = list(getattr(pl_module, "names", lambda: [])())
        for index, split in enumerate(splits):
            rows = self._rows.get(index, {"embeddings": [], "ids": [], "labels": []})
            payload = self._gather(rows, shape, split)
            if trainer.is_global_zero:
                out_dir.mkdir(parents=True, exist_ok=True)
                torch.save(payload | {"label_names": names}, out_dir / f"embeddings_{split}.pt")
        self._rows = {}

    @staticmethod
    def split_names(trainer: Trainer) -> list[str]:
        """One name per predict dataloader: the DataModule's ``predict_splits`` or ``split<i>``."""
        count = len(trainer.predict_dataloaders)
        splits = getattr(getattr(trainer, "datamodule", None), "predict_splits", None)
        if splits is not None and len(splits) == count:
            return list(splits)
        return [f"split{i}" for i in range(count)]

    @staticmethod
    def _gather(rows: dict[str, list[Any]], shape: tuple[int, ...], split: str) -> dict[str, Any]:
        """All ranks' rows of one split in dataset order (every rank calls it)."""
        local = torch.cat(rows["embeddings"]) if rows["embeddings"] else torch.zeros(0, *shape)
        embeddings = gather_rows(local)
        ids = gather_items(rows["ids"])
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            raise ValueError(
                f"WriteEmbeddings: image ids of split {split!r} predicted more than once: "
                f"{repeated[:5]}; the predict loader repeats items (use the DataModule's "
                "predict_dataloader)"
            )
        payload: dict[str, Any] = {"embeddings": embeddings, "image_id": ids}
        flags = gather_items([bool(rows["labels"]) if rows["ids"] else None], order="rank")
        if any(flags) and all(flag is not False for flag in flags):  # labels on every rank
            labels = torch.cat(rows["labels"]) if rows["labels"] else torch.zeros(0, shape[0])
            payload["attributes"] = gather_rows(labels)
        return payload


def load_embeddings(path: str | Path) -> dict[str, Any]:
    """Read an ``embeddings_<split>.pt`` file written by ``WriteEmbeddings``."""
    return torch.load(path, map_location="cpu", weights_only=True)
