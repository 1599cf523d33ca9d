"""What a run prints: what a user can act on, without the lines they cannot.

Dropped: Lightning's advertisement for its cloud logger, a deprecation warning that Lightning's
own code triggers in PyTorch (nothing a user can change), the warning that a resumed run's
checkpoint folder is not empty (run folders are new unless resumed), a model summary's FLOPs
column and total when nothing was counted (a module without ``example_input_array`` gives 0), and
a test table with one row per metric (a per-attribute model logs dozens):
:func:`summarize_test_metrics` prints the headline metrics in one line and says where all are.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_summary.model_summary import (
    get_formatted_model_size,
    get_human_readable_count,
)

__all__ = ["CompactModelSummary", "quiet_console", "summarize_test_metrics"]

_NOISE_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Checkpoint directory .* exists and is not empty",  # a resumed run's own folder, by design
)
_NOISE_LOG_LINES = ("litlogger", "Skipping setting a default `ModelSummary`")
_LIGHTNING_INFO = "lightning.pytorch.utilities.rank_zero"


class _DropLines(logging.Filter):
    """Drops log records that contain any of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(f in record.getMessage() for f in self.fragments)


def quiet_console() -> None:
    """Silence the lines above (idempotent: the filters are installed once per process)."""
    for pattern in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logger = logging.getLogger(_LIGHTNING_INFO)
    if not any(isinstance(f, _DropLines) for f in logger.filters):
        logger.addFilter(_DropLines(_NOISE_LOG_LINES))


class CompactModelSummary(ModelSummary):
    """Lightning's ModelSummary (same arguments) as a short plain table: name, type, parameters
    and mode per module, one line of totals; FLOPs only when they were counted."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [(n, v) for n, v in summary_data if n != "FLOPs" or total_flops > 0]
        header = [name for name, _ in columns]
        rows = [header, *(list(row) for row in zip(*(v for _, v in columns), strict=True))]
        widths = [max(len(r[j]) for r in rows) for j in range(len(header))]
        lines = ["  ".join(map(str.ljust, r, widths)).rstrip() for r in rows]
        frozen = total_parameters - trainable_parameters
        totals = (
            f"{get_human_readable_count(trainable_parameters).strip()} trainable, "
            f"{get_human_readable_count(frozen).strip()} frozen parameters "
            f"({get_formatted_model_size(model_size)} MB)"
        )
        if total_flops > 0:
            totals += f", {get_human_readable_count(total_flops)} FLOPs"
        rank_zero_info("\n".join([*lines, totals]))


def summarize_test_metrics(metrics: Mapping[str, Any], where: str, prefix: str = "test/") -> str:
    """One line of the headline test metrics (``test/<name>``, not ``test/<group>/<name>``)."""
    head = {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}
    top = [f"{k} {v:.4g}" for k, v in head.items() if "/" not in k[len(prefix) :]]
    return f"Test: {', '.join(top) or 'no headline metrics'} ({len(head)} test metrics in {where})"
