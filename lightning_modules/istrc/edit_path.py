"""ISTRC's semantic transformation: fixed-length gradient steps on the sphere (spec
"Inference/uses"; PAPER section 3.4, eq. 1).

Starting from unit latents z_0 (B, D), for t = 1..steps:

    g_t = grad_z BCE(C_a(z_{t-1}), y)
    z_t = normalise(z_{t-1} - d g_t / max(||g_t||_2, 1e-12))      (per row)

PAPER: the step length is "dynamically adjusted" so that z moves the same distance each
iteration, then renormalised; DEFAULT d = 0.002, 500 steps, a snapshot every 50 (z_50 ... z_500,
the 10 images right of the input in Figs. 1, 2, 9, 10), no early stop.

The classifier is given as logits l = C_a(z) before its sigmoid (the spec's C_a ends in a
sigmoid; pass its layers without that last one, for an ``nn.Sequential`` c, ``c[:-1]``). With
p = sigmoid(l), g_t = (p - y) grad_z l, and for y in {0, 1} the factor p - y has the sign of
1 - 2y wherever p lies strictly inside (0, 1), so the step direction is computed as

    g_t / ||g_t|| = (1 - 2y) grad_z l / ||grad_z l||,

the same direction, which stays defined where p rounds to y in floating point: a classifier that
saturates (|l| above about 17 in float32) makes BCE's gradient exactly zero, and computed that way
the walk would stop there, an early stop the spec excludes. Each row's gradient is its own
whatever the batch (the logits are summed over rows), and the classifier runs in eval mode: a
batch edits each row exactly as a run of that row alone would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lightning_modules.istrc.sphere import normalise

__all__ = ["EditPath", "semantic_transformation"]

MIN_GRADIENT_NORM = 1e-12  # floor of ||g_t||: a zero gradient makes a zero step, not a NaN
UNIT_TOLERANCE = 1e-4  # |‖z_0‖ - 1| allowed for the start latents


class EditPath(NamedTuple):
    """One semantic transformation of B latents.

    Attributes:
        snapshots: (S, B, D) z_every, z_2every, ..., z_steps (S = steps / every).
        probabilities: (steps + 1, B) sigmoid(C_a(z_t)) for t = 0..steps.
        distances: (steps + 1, B) ||z_t - z_0||_2 for t = 0..steps; with ``probabilities``, the
            curves of item 6 of the spec's figure list.
    """

    snapshots: Tensor
    probabilities: Tensor
    distances: Tensor


def semantic_transformation(
    classifier: nn.Module,
    z0: Tensor,
    y: float | Tensor,
    steps: int = 500,
    every: int = 50,
    step_distance: float = 0.002,
) -> EditPath:
    """Edit unit latents z0 (B, D) towards attribute value ``y`` of ``classifier``.

    Runs with autograd on (also inside ``torch.no_grad`` or ``torch.inference_mode``), the
    classifier in eval mode; every submodule's mode is restored afterwards. Gradients are taken
    with respect to z only: the classifier's parameters get no ``.grad``.

    Args:
        classifier: Maps latents (B, D) to logits (B,) or (B, 1), rows independent in eval mode.
        z0: Start latents (B, D), unit rows.
        y: Edit direction, 0 or 1: one value, or one per row (B,).
        steps: Iterations (PAPER 500).
        every: Snapshot interval; must divide ``steps`` (DEFAULT 50, so 10 snapshots).
        step_distance: d, the length of each step before renormalising (DEFAULT 0.002).

    Example:
        >>> classifier = nn.Linear(2, 1, bias=False)
        >>> _ = classifier.weight.data.copy_(torch.tensor([[0.0, 4.0]]))  # logit = 4 z_2
        >>> path = semantic_transformation(classifier, torch.tensor([[1.0, 0.0]]), y=1, steps=10,
        ...                                every=5, step_distance=0.1)
        >>> path.snapshots.shape, path.probabilities.shape, path.distances.shape
        (torch.Size([2, 1, 2]), torch.Size([11, 1]), torch.Size([11, 1]))
        >>> [round(p, 2) for p in path.probabilities[::5, 0].tolist()]
        [0.5, 0.86, 0.95]
    """
    _check_schedule(steps, every, step_distance)
    _check_start(z0)
    with _eval_mode(classifier), torch.inference_mode(False), torch.enable_grad():
        start = z0.detach().clone()  # a normal tensor even when z0 is an inference tensor
        sign = (1 - 2 * _targets(y, start)).unsqueeze(-1)  # of p - y, for y in {0, 1}
        z, snapshots, logits, distances = start, [], [], [start.new_zeros(start.shape[0])]
        for t in range(1, steps + 1):
            logit, gradient = _logit_and_gradient(classifier, z, sign)
            norm = gradient.norm(dim=-1, keepdim=True).clamp_min(MIN_GRADIENT_NORM)
            z = normalise(z - step_distance * gradient / norm)
            logits.append(logit)
            distances.append((z - start).norm(dim=-1))
            if t % every == 0:
                snapshots.append(z)
        with torch.no_grad():
            logits.append(_logits(classifier, z))
    return EditPath(torch.stack(snapshots), torch.stack(logits).sigmoid(), torch.stack(distances))


def _logit_and_gradient(classifier: nn.Module, z: Tensor, sign: Tensor) -> tuple[Tensor, Tensor]:
    """C_a's logits at z (B,) and sign * grad_z logit (B, D): the direction of BCE's gradient
    (``sign`` (B, 1) that of p - y), at any saturation."""
    z = z.detach().requires_grad_(True)
    logit = _logits(classifier, z)
    (gradient,) = torch.autograd.grad(logit.sum(), z)
    return logit.detach(), sign * gradient


def _logits(classifier: nn.Module, z: Tensor) -> Tensor:
    """The classifier's logits (B,) at z (B, D)."""
    logit = classifier(z)
    if logit.shape not in ((z.shape[0],), (z.shape[0], 1)):
        raise ValueError(
            f"classifier must map latents {tuple(z.shape)} to logits ({z.shape[0]},) or "
            f"({z.shape[0]}, 1), got {tuple(logit.shape)}"
        )
    return logit.reshape(z.shape[0])


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside; each submodule's own training flag restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _check_schedule(steps: int, every: int, step_distance: float) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if every < 1 or steps % every != 0:
        raise ValueError(f"every must be >= 1 and divide steps = {steps}, got {every}")
    if not step_distance > 0:
        raise ValueError(f"step_distance must be > 0, got {step_distance}")


def _check_start(z0: Tensor) -> None:
    if not z0.is_floating_point() or z0.ndim != 2 or z0.shape[0] < 1:
        raise ValueError(f"z0 must be float latents (B, D), got {z0.dtype} {tuple(z0.shape)}")
    gap = (z0.detach().norm(dim=-1) - 1).abs().max()
    if not bool(gap <= UNIT_TOLERANCE):
        raise ValueError(f"z0 must have unit rows (|norm - 1| <= {UNIT_TOLERANCE}), off by {gap}")


def _targets(y: float | Tensor, z0: Tensor) -> Tensor:
    """y as (B,) targets in z0's dtype and device, each 0 or 1."""
    target = torch.as_tensor(y, dtype=z0.dtype, device=z0.device)
    if target.ndim == 0:
        target = target.expand(z0.shape[0])
    if target.shape != (z0.shape[0],):
        raise ValueError(f"y must be one value or ({z0.shape[0]},), got {tuple(target.shape)}")
    if not bool(((target == 0) | (target == 1)).all()):
        raise ValueError(f"y must be 0 or 1 (the edit direction), got {y}")
    return target
