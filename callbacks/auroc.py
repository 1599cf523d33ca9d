"""Per-attribute and macro AUROC of multi-label logits, logged at the end of val/test epochs.

Consumes the dict returned by any module's ``validation_step`` / ``test_step``: ``LOGITS`` (B, L)
and ``TARGET`` (B, L) in {0, 1} (``callbacks/keys.py``). Scores and targets are accumulated in a
torchmetrics ``Metric`` with ``"cat"`` states, so under DDP every process computes the AUROC of
the whole evaluated set.

AUROC definition: the exact (unbinned) trapezoidal area under the ROC curve with tied scores
forming one step, i.e. ``sklearn.metrics.roc_auc_score`` per column. It is computed with
torchmetrics' ``binary_auroc(thresholds=None)`` on the per-column dense ranks of the logits: the
AUROC depends only on the order of the scores, and passing ranks in [0, 1] stops torchmetrics from
applying a float32 sigmoid, which saturates logits above ~17 to 1.0 and would create false ties.

An attribute whose evaluated set holds a single class has no AUROC: it is not logged (no 0 or 0.5
stand-in), it is NaN in ``callback.last``, it is named in a warning each epoch, and the macro mean
is over the defined attributes only.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat

from callbacks import keys
from callbacks.base import EvaluationCallback, evaluated_epoch
from callbacks.global_log import log_global
from callbacks.panels import (
    attribute_bar_chart,
    local_log_dir,
    log_images,
    resolve_attribute_names,
)

__all__ = ["LogAUROC", "per_attribute_auroc"]


class _ScoresAndTargets(Metric):
    """Holds every (logits, target) row seen; ``"cat"`` states so DDP gathers all of them."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, target: Tensor) -> None:
        if logits.ndim != 2 or logits.shape != target.shape:
            raise ValueError(
                f"LogAUROC needs logits and target of the same shape (B, L), got "
                f"{tuple(logits.shape)} and {tuple(target.shape)}"
            )
        if torch.isnan(logits).any():
            raise ValueError("LogAUROC: the logits contain NaN")
        if not ((target == 0) | (target == 1)).all():
            raise ValueError("LogAUROC: target must only hold 0 and 1")
        self.scores.append(logits.detach().float())
        self.targets.append(target.detach().float())

    def compute(self) -> tuple[Tensor, Tensor]:
        return dim_zero_cat(self.scores), dim_zero_cat(self.targets)


def per_attribute_auroc(scores: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """AUROC of every column of ``scores`` (N, L) against ``target`` (N, L) in {0, 1}.

    Returns:
        ``(auroc, num_positive, num_negative)``, each (L,); ``auroc`` is float64 and NaN where the
        column's target holds a single class (AUROC undefined).
    """
    target = target.long()
    positives = target.sum(0)
    negatives = target.shape[0] - positives
    auroc = torch.full((scores.shape[1],), math.nan, dtype=torch.float64)
    for j in range(scores.shape[1]):
        if positives[j] == 0 or negatives[j] == 0:
            continue
        # dense ranks in [0, 1]: same order and ties as the logits, never re-squashed by sigmoid
        _, ranks = torch.unique(scores[:, j], return_inverse=True)
        ranks = ranks.double() / max(1, int(ranks.max()))
        auroc[j] = binary_auroc(ranks, target[:, j], thresholds=None, validate_args=False).item()
    return auroc, positives.cpu(), negatives.cpu()


class LogAUROC(EvaluationCallback):
    """Logs ``{stage}/auroc/<name>`` per attribute, ``{stage}/auroc_macro`` and
    ``{stage}/auroc_num_defined`` at the end of each validation/test epoch.

    Consumes the step outputs ``LOGITS`` (B, L) and ``TARGET`` (B, L) in {0, 1}
    (``callbacks/keys.py``). Values go through ``pl_module.log`` (every logger sees them,
    ``ModelCheckpoint`` can monitor ``val/auroc_macro``). Undefined attributes (a single class in
    the evaluated set) are left out of the logs and of the macro mean and are named in a warning.
    With a logger attached, rank zero also writes ``<log_dir>/auroc_<stage>_epoch<N>.csv``
    (attribute, auroc, positives, negatives) and logs the per-attribute bar chart with the macro
    mean line (paper Fig. 3) as ``{stage}/auroc_per_attribute``. Stage routing, the sanity check
    and the epoch rule are those of ``callbacks.base.EvaluationCallback``. All dataloaders of a
    stage are pooled. ``last[stage]`` holds the latest ``{name: auroc or NaN}``.

    Args:
        attribute_names: Names of the L columns; default ``trainer.datamodule.attribute_names``,
            else ``attr_0, attr_1, ...``.
        stages: Stages to evaluate, any of ``"val"`` and ``"test"``.
        every_n_epochs: Evaluate validation after every n-th epoch (and the last).
        plot: Log the per-attribute bar chart.
        csv: Write the per-attribute CSV file.
        sort_bars: Sort the bar chart by AUROC instead of keeping the attribute order.
    """

    required_keys = (keys.LOGITS, keys.TARGET)

    def __init__(
        self,
        attribute_names: list[str] | None = None,
        stages: list[str] | None = None,
        every_n_epochs: int = 1,
        plot: bool = True,
        csv: bool = True,
        sort_bars: bool = False,
    ) -> None:
        super().__init__(stages, every_n_epochs)
        self.attribute_names = attribute_names
        self.plot = plot
        self.csv = csv
        self.sort_bars = sort_bars
        self.last: dict[str, dict[str, float]] = {}

    def make_metrics(self, stage: str) -> _ScoresAndTargets:
        return _ScoresAndTargets()

    def update(self, metrics, outputs, batch, pl_module: LightningModule) -> None:
        metrics.update(outputs[keys.LOGITS], outputs[keys.TARGET])

    def report(self, stage: str, metrics, trainer: Trainer, pl_module: LightningModule) -> None:
        if not metrics.update_called:
            # the evaluation sampler gives every rank at least one item when there is any, so
            # all ranks take this branch together and no collective is left unmatched
            rank_zero_warn(f"LogAUROC: no {stage} batches were evaluated; nothing logged")
            return
        scores, target = metrics.compute()  # gathered from every process under DDP
        epoch = evaluated_epoch(trainer)
        auroc, positives, negatives = per_attribute_auroc(scores, target)
        names = resolve_attribute_names(trainer, self.attribute_names, auroc.numel())
        self.last[stage] = dict(zip(names, auroc.tolist(), strict=True))
        defined = ~torch.isnan(auroc)
        undefined = [n for n, ok in zip(names, defined.tolist(), strict=True) if not ok]
        if undefined:
            rank_zero_warn(
                f"LogAUROC: {stage} epoch {epoch}: AUROC undefined (one class "
                f"only in the evaluated set) for {len(undefined)} attribute(s), left out of the "
                f"macro mean: "
                f"{', '.join(undefined)}"
            )
        macro = auroc[defined].mean().item() if defined.any() else math.nan
        self._log(stage, pl_module, names, auroc, macro, int(defined.sum()))
        log_dir = local_log_dir(trainer)
        if log_dir is None or not trainer.is_global_zero:
            return
        if self.csv:
            path = log_dir / f"auroc_{stage}_epoch{epoch}.csv"
            _write_csv(path, names, auroc, positives, negatives)
        if self.plot:
            chart = self._chart(stage, names, auroc, macro)
            log_images(trainer, f"{stage}/auroc_per_attribute", [chart], None)

    def _log(
        self,
        stage: str,
        pl_module: LightningModule,
        names: list[str],
        auroc: Tensor,
        macro: float,
        num_defined: int,
    ) -> None:
        # values are already global (gathered states): logged as such, exact on every rank
        log = {
            f"{stage}/auroc/{n}": v
            for n, v in zip(names, auroc.tolist(), strict=True)
            if not math.isnan(v)
        }
        if not math.isnan(macro):
            log[f"{stage}/auroc_macro"] = macro
        log[f"{stage}/auroc_num_defined"] = float(num_defined)
        log_global(pl_module, log)

    def _chart(self, stage: str, names: list[str], auroc: Tensor, macro: float):
        order = list(range(len(names)))
        if self.sort_bars:
            order.sort(key=lambda j: (math.isnan(auroc[j]), -float(auroc[j])))
        title = f"{stage} AUROC per attribute (macro {macro:.4f} over defined)"
        return attribute_bar_chart(
            [names[j] for j in order],
            [float(auroc[j]) for j in order],
            title,
            mean_line=macro,
            ylabel="AUROC",
            ylim=(0.0, 1.0),
        )


def _write_csv(
    path: Path, names: list[str], auroc: Tensor, positives: Tensor, negatives: Tensor
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["attribute", "auroc", "num_positive", "num_negative"])
        for j, name in enumerate(names):
            value = "undefined" if math.isnan(auroc[j]) else repr(float(auroc[j]))
            writer.writerow([name, value, int(positives[j]), int(negatives[j])])
