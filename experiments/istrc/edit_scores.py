"""Scoring semantic edits (spec "Evaluation: Edit success" and synthetic assertion 6).

An edit drives latents z_0 of test inputs whose label is not the target towards the target y of
one attribute (``edit_path.semantic_transformation``). Probabilities are read *towards the target*:
p for y = 1, 1 - p for y = 0, so "higher" always means "more of the edit" (for Young, y = 0 is
"older": a higher 1 - p(Young)).

- ``classifier_success``: the latent classifier's target probability at z_steps >= ``level``
  (assertion 6: 0.9);
- ``judge_raised``: the independent judge's target probability on decode(z_steps) above that on
  the circle reconstruction x^ = decode(z_0) (assertion 6: for >= 70 %);
- ``judge_flipped``: the judge predicts the target on decode(z_steps) and not on x^ (the spec's
  edit success; "predicts 1" is p >= its threshold, "predicts 0" is p < it);
- ``other_mean_abs_delta``: the judge's mean |p(decode(z_steps)) - p(x^)| over the other
  attributes and inputs;
- ``path_checks``: the largest | ||z_t|| - 1 | and the longest step ||z_t - z_{t-1}|| of every
  path, to compare with the step length d (assertion 6: <= d + 1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["SUCCESS_LEVEL", "edit_success", "path_checks", "towards"]

SUCCESS_LEVEL = 0.9  # assertion 6: C_a(z_500) >= 0.9


def towards(probabilities: Tensor, target: int) -> Tensor:
    """The probability of the target value: p for target 1, 1 - p for target 0."""
    if target not in (0, 1):
        raise ValueError(f"target must be 0 or 1, got {target}")
    return probabilities if target == 1 else 1 - probabilities


def edit_success(
    classifier_after: Tensor,
    judge_before: Tensor,
    judge_after: Tensor,
    column: int,
    target: int,
    threshold: float = 0.5,
    others: Sequence[int] = (),
    level: float = SUCCESS_LEVEL,
) -> dict[str, float]:
    """Fractions of the edited inputs that the edit moved, and the judge's side effects.

    Args:
        classifier_after: (B,) C_a(z_steps), the latent classifier's probability of the attribute.
        judge_before: (B, L) the judge's probabilities on x^ = decode(z_0).
        judge_after: (B, L) on decode(z_steps).
        column: The judge's column of the edited attribute.
        target: The edit's target value y (0 or 1).
        threshold: The judge's threshold of ``column`` (predicts 1 where p >= threshold).
        others: The judge's columns of the other attributes (mean |delta p| over them).
        level: The classifier's success level (0.9).
    """
    if judge_before.shape != judge_after.shape or judge_before.ndim != 2:
        raise ValueError(
            f"judge probabilities must be (B, L) alike, got {tuple(judge_before.shape)} and "
            f"{tuple(judge_after.shape)}"
        )
    if classifier_after.shape != judge_before.shape[:1] or judge_before.shape[0] == 0:
        raise ValueError("classifier_after must be (B,) with B >= 1, as the judge's rows")
    before, after = judge_before[:, column].double(), judge_after[:, column].double()
    predicted_before = (before >= threshold) == bool(target)
    predicted_after = (after >= threshold) == bool(target)
    others = [j for j in others if j != column]
    delta = (judge_after[:, others].double() - judge_before[:, others].double()).abs()
    return {
        "count": int(before.numel()),
        "classifier_success": _mean(towards(classifier_after, target) >= level),
        "judge_raised": _mean(towards(after, target) > towards(before, target)),
        "judge_flipped": _mean(predicted_after & ~predicted_before),
        "judge_target_before": _mean(predicted_before),
        "judge_target_after": _mean(predicted_after),
        "judge_mean_delta": (towards(after, target) - towards(before, target)).mean().item(),
        "other_mean_abs_delta": delta.mean().item() if others else float("nan"),
    }


def path_checks(z0: Tensor, path: Tensor, step_distance: float) -> dict[str, float]:
    """Unit norms and step lengths of full edit paths.

    Args:
        z0: (B, D) the start latents.
        path: (T, B, D) z_1 .. z_T, every step (``semantic_transformation(..., every=1)``).
        step_distance: d, each step's length before renormalising.

    Returns:
        ``max_norm_error`` (max over t >= 1 and rows of | ||z_t|| - 1 |), ``max_step`` (max
        ||z_t - z_{t-1}||, z_0 included), ``step_distance`` and ``steps_within`` (1.0 when every
        step is at most d + 1e-6, else 0.0).
    """
    if path.ndim != 3 or path.shape[1:] != z0.shape:
        raise ValueError(f"path must be (T, B, D) of z0's rows, got {tuple(path.shape)}")
    full = torch.cat([z0[None], path]).double()
    max_step = (full[1:] - full[:-1]).norm(dim=-1).max().item()
    return {
        "max_norm_error": (full[1:].norm(dim=-1) - 1).abs().max().item(),
        "max_step": max_step,
        "step_distance": float(step_distance),
        "steps_within": float(max_step <= step_distance + 1e-6),
    }


def _mean(mask: Tensor) -> float:
    return mask.double().mean().item()
