"""Write the per-item outputs of a predict run, one file per predicted split, exact under DDP.

Consumes ``predict_step`` outputs of any module: a dict of per-item values, tensors (B, ...) and
lists of length B, with ``IMAGE_ID`` (``callbacks/keys.py``) among them; ``dataloader_idx`` is
ignored. At the end of the predict epoch every rank gathers the rows of all ranks in dataset
order (``callbacks.gather``: the evaluation loaders shard without repeats, rank r holding items
r, r + W, ...) and rank zero writes ``<prefix>_<split>.pt``, the file of a one-process run. An
image id predicted twice (a loader that pads its shards with repeats) is refused.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from callbacks import keys
from callbacks.gather import gather_items, gather_rows
from callbacks.panels import local_log_dir

__all__ = ["WriteSplitTensors", "predict_split_names"]

#: Output keys that are not per-item values (Lightning's or a module's bookkeeping).
NOT_PER_ITEM = ("dataloader_idx",)


def predict_split_names(trainer: Trainer) -> list[str]:
    """One name per predict dataloader: the DataModule's ``predict_splits`` or ``split<i>``."""
    count = len(trainer.num_predict_batches)  # one entry per loader (a lone loader: one)
    splits = getattr(getattr(trainer, "datamodule", None), "predict_splits", None)
    if splits is not None and len(splits) == count:
        return list(splits)
    return [f"split{i}" for i in range(count)]


class WriteSplitTensors(BasePredictionWriter):
    """``<output_dir>/<prefix>_<split>.pt`` per predict dataloader, in dataset order.

    Each file holds every per-item key of the outputs (tensors concatenated along the items, on
    the CPU, with their dtype; lists as lists) and ``metadata`` (by default the DataModule's
    ``attribute_names``, when it exposes them); it loads with ``torch.load(path,
    weights_only=True)``. Split names are
    the DataModule's ``predict_splits``, else ``split<dataloader_idx>``. A split with no items is
    written with an empty ``image_id`` only, and a warning.

    Args:
        prefix: Start of the file names.
        output_dir: Folder of the files; default the first logger's folder (the run folder), else
            the trainer's ``default_root_dir``.
    """

    #: Keys every output dict must hold (a subclass adds its own).
    required: tuple[str, ...] = (keys.IMAGE_ID,)

    def __init__(self, prefix: str = "predictions", output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        if not prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name start, got {prefix!r}")
        self.prefix = prefix
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
        values = self._per_item(prediction)
        rows = self._rows.setdefault(dataloader_idx, {name: [] for name in values})
        if set(rows) != set(values):
            raise ValueError(
                f"{type(self).__name__}: the predict outputs of dataloader {dataloader_idx} "
                f"changed keys from {sorted(rows)} to {sorted(values)}"
            )
        for name, value in values.items():
            if isinstance(value, Tensor):
                rows[name].append(value.detach().cpu())
            else:
                rows[name].extend(value)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        out_dir = Path(self.output_dir or local_log_dir(trainer) or trainer.default_root_dir)
        metadata = self.metadata(trainer, pl_module)
        for index, split in enumerate(predict_split_names(trainer)):
            payload = self._gather(self._rows.get(index, {}), split)  # every rank: collectives
            if trainer.is_global_zero:
                out_dir.mkdir(parents=True, exist_ok=True)
                torch.save(payload | metadata, out_dir / f"{self.prefix}_{split}.pt")
        self._rows = {}

    def metadata(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """What every file holds besides the rows: the DataModule's ``attribute_names`` when it
        exposes them (plain Python values, the same on every rank)."""
        names = getattr(getattr(trainer, "datamodule", None), "attribute_names", None)
        return {} if names is None else {"attribute_names": list(names)}

    def _per_item(self, prediction: dict[str, Any]) -> dict[str, Any]:
        """The per-item values of one output dict, each checked to hold B items."""
        missing = [name for name in self.required if name not in prediction]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the predict outputs {sorted(missing)}, got "
                f"{sorted(prediction)}"
            )
        values = {k: v for k, v in prediction.items() if k not in NOT_PER_ITEM}
        values[keys.IMAGE_ID] = [str(i) for i in values[keys.IMAGE_ID]]
        count = len(values[keys.IMAGE_ID])
        for name, value in values.items():
            if _length(value) != count:
                raise ValueError(
                    f"{type(self).__name__}: output {name!r} does not hold one row for each of "
                    f"the {count} image ids (tensors (B, ...) and lists of B items are written)"
                )
        return values

    def _gather(self, rows: dict[str, list[Any]], split: str) -> dict[str, Any]:
        """All ranks' rows of one split in dataset order (every rank calls it)."""
        schemas = gather_items([_schema(rows)], order="rank")
        schema = _agreed_schema(schemas, split)
        payload: dict[str, Any] = {}
        for name in sorted(schema):
            if schema[name] is None:  # a list of Python objects
                payload[name] = gather_items(rows.get(name, []))
                continue
            shape, dtype = schema[name]
            parts = rows.get(name) or [torch.zeros(0, *shape, dtype=getattr(torch, dtype))]
            payload[name] = gather_rows(torch.cat(parts))
        ids = payload.setdefault(keys.IMAGE_ID, [])
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            raise ValueError(
                f"{type(self).__name__}: image ids of split {split!r} predicted more than once: "
                f"{repeated[:5]}; the predict loader repeats items (use the DataModule's "
                "predict_dataloader, whose sampler shards without repeats)"
            )
        if not ids:
            rank_zero_warn(f"{type(self).__name__}: the predict split {split!r} has no items")
        return payload


def _length(value: Any) -> int | None:
    """The number of items of a per-item value (B for a (B, ...) tensor or a list), else None."""
    if isinstance(value, Tensor):
        return value.shape[0] if value.ndim > 0 else None
    return len(value) if isinstance(value, list | tuple) else None


def _schema(rows: dict[str, list[Any]]) -> dict[str, tuple[tuple[int, ...], str] | None]:
    """Per key: (trailing shape, dtype name) of a tensor, None for a list; {} without rows."""
    schema: dict[str, tuple[tuple[int, ...], str] | None] = {}
    for name, parts in rows.items():
        tensors = [p for p in parts if isinstance(p, Tensor)]
        if tensors:
            schema[name] = (
                tuple(tensors[0].shape[1:]),
                str(tensors[0].dtype).removeprefix("torch."),
            )
        elif parts:
            schema[name] = None
    return schema


def _agreed_schema(schemas: list[dict[str, Any]], split: str) -> dict[str, Any]:
    """The one schema of the ranks that hold rows; ``ValueError`` when they disagree."""
    held = [s for s in schemas if s]
    if any(s != held[0] for s in held):
        raise ValueError(
            f"WriteSplitTensors: the ranks' predict outputs of split {split!r} differ in keys, "
            f"shapes or dtypes: {held}"
        )
    return held[0] if held else {}
