"""The numbers the ISTRC stage runs logged themselves, read from their ``metrics.csv``.

- verification of the encoder E (spec "Evaluation: Verification", assertion 1): test accuracy and
  ROC AUC of the Euclidean and spherical distances and the gap between the two AUCs;
- the BEGAN (assertion 2): test L1 of D(x) beside the mean-image predictor's, k_t's range over
  the logged steps, and M_global at 10 % of training and at its end. M_global is logged per step
  (``train/m_global_step``, every ``log_every_n_steps``) and per epoch; one step's value is one
  batch's, so both ends are window means over the logged steps: 5-15 % of the last logged step
  ("at 10 %") and 90-100 % ("final"). The epoch reading (the mean of the first epoch whose index
  is >= 10 % of the epochs, and of the last epoch) is reported beside it;
- the mapping F's logged test R^2 and the latent classifiers' logged test AUROC per attribute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.metrics_csv import epoch_series, last_value, step_series

__all__ = [
    "M_GLOBAL_WINDOWS",
    "began_numbers",
    "classifier_aurocs",
    "verification_numbers",
    "window_mean",
]

#: Fractions of the last logged step that the two M_global window means cover.
M_GLOBAL_WINDOWS = {"at_10pct": (0.05, 0.15), "final": (0.9, 1.0)}


def window_mean(steps: Sequence[int], values: Sequence[float], low: float, high: float) -> float:
    """Mean of the values logged at steps within [low, high] x the last logged step; NaN when
    none is (then the nearest logged value to the window's middle)."""
    if not steps:
        return math.nan
    last = max(steps)
    picked = [v for s, v in zip(steps, values, strict=True) if low * last <= s <= high * last]
    if picked:
        return sum(picked) / len(picked)
    middle = (low + high) / 2 * last
    return min(zip(steps, values, strict=True), key=lambda sv: abs(sv[0] - middle))[1]


def verification_numbers(metrics: Path) -> dict[str, float]:
    """The encoder run's test verification: accuracy and AUC of both distances, AUC gap."""
    keys = ("accuracy_euclidean", "accuracy_spherical", "auc_euclidean", "auc_spherical")
    numbers = {key: last_value(metrics, f"test/{key}") for key in keys}
    numbers["auc_gap"] = abs(numbers["auc_euclidean"] - numbers["auc_spherical"])
    return numbers


def began_numbers(metrics: Path) -> dict[str, Any]:
    """The BEGAN run's test L1s and their ratio, k_t's range, M_global early and late.

    ``m_global_at_10pct`` / ``m_global_final`` are the step-window means (the epoch means when
    no step value was logged); ``m_global_epoch_*`` the epoch reading.
    """
    l1, baseline = last_value(metrics, "test/l1"), last_value(metrics, "test/l1_mean_image")
    k_steps, k_values = step_series(metrics, "train/k_step")
    if not k_values:
        k_steps, k_values = step_series(metrics, "train/k")
    m_steps, m_values = step_series(metrics, "train/m_global_step")
    epochs, m_epoch = epoch_series(metrics, "train/m_global_epoch")
    early_epoch = _epoch_at(epochs, m_epoch, 0.1)
    final_epoch = m_epoch[-1] if m_epoch else math.nan
    windows = {
        name: window_mean(m_steps, m_values, *bounds) for name, bounds in M_GLOBAL_WINDOWS.items()
    }
    stepwise = bool(m_values)
    return {
        "l1": l1,
        "l1_mean_image": baseline,
        "l1_ratio": l1 / baseline if baseline > 0 else math.nan,
        "k_min": min(k_values, default=math.nan),
        "k_max": max(k_values, default=math.nan),
        "k_logged_steps": len(k_values),
        "m_global_at_10pct": windows["at_10pct"] if stepwise else early_epoch,
        "m_global_final": windows["final"] if stepwise else final_epoch,
        "m_global_reading": "step windows" if stepwise else "epoch means",
        "m_global_epoch_at_10pct": early_epoch,
        "m_global_epoch_final": final_epoch,
        "epochs": len(m_epoch),
        "last_step": max(m_steps, default=0),
    }


def _epoch_at(epochs: Sequence[int], values: Sequence[float], fraction: float) -> float:
    """The value of the first epoch whose index is >= ``fraction`` of the epoch count."""
    count = len(values)
    for epoch, value in zip(epochs, values, strict=True):
        if epoch >= fraction * count:
            return value
    return values[-1] if values else math.nan


def classifier_aurocs(metrics: Path, names: Sequence[str]) -> dict[str, float]:
    """The classifiers run's logged ``test/auroc/<name>`` per attribute (NaN where absent)."""
    return {name: last_value(metrics, f"test/auroc/{name}") for name in names}
