"""``LogImageToImagePanel``: input, output and target of the same items, side by side, per epoch.

For any method that maps images to images (editing, try-on, super-resolution, reconstruction):
one table per evaluated epoch, a row per item, a column per output key (by default ``INPUTS``,
``PREDS`` and ``TARGET_IMAGES`` of ``callbacks/keys.py``). The items are the first
``num_images`` of the stage in dataset order (evaluation loaders are not shuffled, and under DDP
``FirstBatch.gather`` restores that order), so the same items appear every epoch and epochs can
be compared. Logged as ``{stage}/image_to_image`` through ``callbacks.panels.log_images`` (every
logger that takes images, and a PNG in the run folder), on rank zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning import LightningModule, Trainer
from torch import Tensor
from torch.nn import functional as F

from callbacks import keys
from callbacks.base import EvaluationCallback, FirstBatch, evaluated_epoch
from callbacks.panels import image_table, log_images

__all__ = ["LogImageToImagePanel", "panel_rows"]

#: Column titles of the standard keys; other keys are titled by their name.
TITLES = {keys.INPUTS: "input", keys.PREDS: "output", keys.TARGET_IMAGES: "target"}


def panel_rows(
    columns: Mapping[str, Tensor], value_range: tuple[float, float] = (0.0, 1.0)
) -> list[list[Tensor]]:
    """One row per item of (3, H, W) images in [0, 1], all at the size of the largest column.

    ``columns`` maps a key to its (N, C, H, W) images (C of 1 or 3) in ``value_range``; values
    outside it are clipped. Smaller images (a low-resolution input) are enlarged by
    nearest-neighbour interpolation, so their pixels stay visible.
    """
    low, high = value_range
    images = list(columns.values())
    count = min(len(x) for x in images)
    height = max(x.shape[-2] for x in images)
    width = max(x.shape[-1] for x in images)
    shown = []
    for name, x in columns.items():
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"LogImageToImagePanel: {name!r} must be (N, 1 or 3, H, W) images, got "
                f"{tuple(x.shape)}"
            )
        x = ((x[:count].float() - low) / (high - low)).nan_to_num(0.0).clamp(0, 1)
        if tuple(x.shape[-2:]) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="nearest")
        shown.append(x.expand(-1, 3, -1, -1))
    return [[x[i] for x in shown] for i in range(count)]


class LogImageToImagePanel(EvaluationCallback):
    """Logs a table of the same ``num_images`` items (rows) x ``columns`` per evaluated epoch.

    Example (``trainer.callbacks`` of an experiment YAML)::

        - class_path: callbacks.image_to_image.LogImageToImagePanel
          init_args: {num_images: 6, every_n_epochs: 5}

    Args:
        num_images: Items (rows) drawn: the first of the stage, in dataset order.
        columns: Output keys drawn side by side, left to right (``callbacks/keys.py``); default
            ``["inputs", "preds", "target_images"]``. Each must be in the step outputs.
        value_range: The (low, high) range of the images, (0, 1) by default, (-1, 1) for tanh
            outputs; values outside are clipped for drawing.
        stages: ``val`` (default) and/or ``test``.
        every_n_epochs: Draw after every n-th validation epoch (and after the last one).

    Rows are titled with the items' ``image_id`` when the outputs carry it, else their index.
    ``last_rows`` holds the latest table's rows (lists of (3, H, W) tensors), for inspection.
    """

    def __init__(
        self,
        num_images: int = 8,
        columns: list[str] | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        stages: list[str] | None = None,
        every_n_epochs: int = 1,
    ) -> None:
        columns = [keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES] if columns is None else columns
        if not columns or len(set(columns)) != len(columns):
            raise ValueError(f"LogImageToImagePanel: columns must be distinct keys, got {columns}")
        if num_images < 1:
            raise ValueError(f"LogImageToImagePanel: num_images must be >= 1, got {num_images}")
        low, high = value_range
        if not high > low:
            raise ValueError(
                f"LogImageToImagePanel: value_range needs low < high, got {value_range}"
            )
        self.required_keys = tuple(columns)  # checked by the base, at setup and every step
        super().__init__(["val"] if stages is None else stages, every_n_epochs)
        self.num_images, self.columns = num_images, list(columns)
        self.value_range = (float(low), float(high))
        self.last_rows: list[list[Tensor]] = []

    def make_metrics(self, stage: str) -> FirstBatch:
        return FirstBatch(self.num_images)

    def update(self, metrics: FirstBatch, outputs: Mapping[str, Any], batch, pl_module) -> None:
        if metrics.values is not None:
            return
        kept = {key: outputs[key].float() for key in self.columns}
        if keys.IMAGE_ID in outputs:
            kept[keys.IMAGE_ID] = outputs[keys.IMAGE_ID]
        metrics.keep(kept)

    def report(
        self, stage: str, metrics: FirstBatch, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        metrics.gather(trainer.world_size)  # every rank: the first items in dataset order
        if not trainer.is_global_zero or metrics.values is None:
            return
        values = metrics.values
        rows = panel_rows({key: values[key] for key in self.columns}, self.value_range)
        ids: Sequence[Any] = values.get(keys.IMAGE_ID, range(len(rows)))
        self.last_rows = rows
        epoch = evaluated_epoch(trainer)
        table = image_table(
            rows,
            [TITLES.get(key, key) for key in self.columns],
            [str(i) for i in list(ids)[: len(rows)]],
            title=f"{stage}, epoch {epoch}",
        )
        log_images(trainer, f"{stage}/image_to_image", [table], [f"{stage}, epoch {epoch}"])
