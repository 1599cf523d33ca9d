"""Write attribute labels predicted for an unlabelled set (FFHQ), soft and hard.

Consumes ``predict_step`` outputs ``{"probs" (B, L), "image_id" list[str]}`` of any multi-label
classifier and the module's per-attribute ``thresholds`` buffer (duck-typed, no method import).
Under DDP every rank gathers the rows of all ranks in dataset order (``callbacks.gather``) and
rank zero writes the files, which are those of a one-process run.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image

from callbacks.gather import gather_items, gather_rows
from callbacks.panels import (
    figure_to_image,
    local_log_dir,
    log_images,
    new_figure,
    resolve_attribute_names,
)
from datamodules.formats.celeba import write_attribute_table


class WriteAttributeLabels(BasePredictionWriter):
    """Write ``<prefix>_soft_labels.csv``, ``<prefix>_hard_labels.txt``, ``<prefix>_labels.pt``.

    - soft labels: CSV with header ``image_id, <names>`` and one row of probabilities per image;
    - hard labels: ``probs >= thresholds`` in the ``list_attr_celeba.txt`` format (count line,
      names, rows of +1/-1), so ``datamodules.formats.celeba.read_attribute_table`` reads them;
    - ``.pt``: ``{"image_id", "attribute_names", "soft" float32 (N, L), "hard" uint8 (N, L),
      "thresholds" (L,)}`` (plain types and tensors, loads with ``weights_only=True``);
    - ``<prefix>_positive_rate.csv`` and a bar chart (``predict/positive_rate``): the predicted
      positive rate per attribute next to the training prevalence (``pl_module.train_prevalence``).

    Thresholds come from ``pl_module.thresholds`` (L,). When ``pl_module.thresholds_tuned`` is False
    (no test-split search happened in this process or checkpoint) the writer raises, unless
    ``allow_untuned`` is set, in which case it warns and uses the buffer as is (0.5 by default).

    Args:
        output_dir: Folder for the files; default: the first logger's folder (the run folder).
        prefix: File-name prefix (``ffhq``).
        allow_untuned: Accept thresholds that were not tuned.
        attribute_names: Column names; default ``pl_module.attribute_names`` then the DataModule's.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        prefix: str = "ffhq",
        allow_untuned: bool = False,
        attribute_names: list[str] | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.prefix = prefix
        self.allow_untuned = allow_untuned
        self.attribute_names = attribute_names
        self._ids: list[str] = []
        self._probs: list[torch.Tensor] = []

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._ids, self._probs = [], []
        tuned = getattr(pl_module, "thresholds_tuned", None)
        if getattr(pl_module, "thresholds", None) is None:
            raise ValueError(f"{type(pl_module).__name__} has no `thresholds` buffer")
        if tuned is not None and not bool(tuned):
            msg = (
                f"{type(pl_module).__name__}.thresholds were never tuned (run `test` on the "
                "labelled split first, in the same process, or load a checkpoint saved after it)"
            )
            if not self.allow_untuned:
                raise ValueError(msg + "; set allow_untuned=true to write labels at these values")
            rank_zero_warn(msg + f"; writing hard labels at {pl_module.thresholds.tolist()}")

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: dict[str, Any],
        batch_indices,
        batch,
        batch_idx,
        dataloader_idx=0,
    ) -> None:
        probs = prediction["probs"].detach().float().cpu()
        ids = [str(i) for i in prediction["image_id"]]
        if len(ids) != probs.shape[0]:
            raise ValueError(f"{len(ids)} image ids for {probs.shape[0]} rows of probabilities")
        self._ids.extend(ids)
        self._probs.append(probs)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        ids, probs = self._gather(trainer)
        if not trainer.is_global_zero:
            return
        out_dir = Path(self.output_dir or local_log_dir(trainer) or trainer.default_root_dir)
        thresholds = pl_module.thresholds.detach().float().cpu()
        names = self.attribute_names or getattr(pl_module, "attribute_names", None)
        names = resolve_attribute_names(trainer, names, probs.shape[1])
        if thresholds.shape != (probs.shape[1],):
            raise ValueError(
                f"thresholds {tuple(thresholds.shape)} for {probs.shape[1]} attributes"
            )
        hard = (probs >= thresholds.view(1, -1)).to(torch.uint8)
        self.write_files(out_dir, ids, names, probs, hard, thresholds)
        rate = hard.double().mean(0)
        prevalence = getattr(pl_module, "train_prevalence", None)
        prevalence = prevalence.detach().double().cpu() if prevalence is not None else None
        self.write_rates(out_dir, names, rate, prevalence)
        chart = positive_rate_chart(names, rate, prevalence, self.prefix.upper())
        log_images(trainer, "predict/positive_rate", [chart], [f"{self.prefix} positive rate"])

    def _gather(self, trainer: Trainer) -> tuple[list[str], torch.Tensor]:
        """Every rank's rows in dataset order: the files are those of one process."""
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, 0)
        ids, probs = gather_items(self._ids), gather_rows(probs)
        if not ids:
            raise ValueError("no predictions to write: the predict dataloader was empty")
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            raise ValueError(
                f"WriteAttributeLabels: image ids predicted more than once: {repeated[:5]}; the "
                "predict loader repeats items (use the DataModule's predict_dataloader)"
            )
        return ids, probs

    def write_files(self, out_dir: Path, ids, names, probs, hard, thresholds) -> None:
        """Write the soft CSV, the CelebA-format hard labels and the tensor file."""
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / f"{self.prefix}_soft_labels.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", *names])
            for image_id, row in zip(ids, probs.tolist(), strict=True):
                writer.writerow([image_id, *(f"{v:.6f}" for v in row)])
        write_attribute_table(out_dir / f"{self.prefix}_hard_labels.txt", ids, hard, names)
        torch.save(
            {
                "image_id": list(ids),
                "attribute_names": list(names),
                "soft": probs.clone(),
                "hard": hard.clone(),
                "thresholds": thresholds.clone(),
            },
            out_dir / f"{self.prefix}_labels.pt",
        )

    def write_rates(self, out_dir: Path, names, rate, prevalence) -> None:
        """``<prefix>_positive_rate.csv``: attribute, predicted rate, training prevalence."""
        with (out_dir / f"{self.prefix}_positive_rate.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["attribute", f"{self.prefix}_positive_rate", "train_prevalence"])
            for j, name in enumerate(names):
                train = "nan" if prevalence is None else f"{prevalence[j]:.6f}"
                writer.writerow([name, f"{rate[j]:.6f}", train])


def positive_rate_chart(
    names: list[str], rate: torch.Tensor, prevalence: torch.Tensor | None, label: str
) -> Image.Image:
    """Grouped bars: predicted positive rate per attribute next to the training prevalence."""
    fig = new_figure(max(6.0, 0.3 * len(names) + 2.0), 4.5)
    ax = fig.subplots()
    x = torch.arange(len(names), dtype=torch.float64)
    ax.bar((x - 0.2).tolist(), rate.tolist(), width=0.4, label=f"{label} predicted")
    if prevalence is not None and not all(math.isnan(v) for v in prevalence.tolist()):
        ax.bar((x + 0.2).tolist(), prevalence.tolist(), width=0.4, label="train prevalence")
    ax.set_xticks(x.tolist())
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction positive")
    ax.set_title(f"{label}: predicted positive rate vs training prevalence")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure_to_image(fig)
