"""Class activation maps: the suite's one per-map min-max normalization.

Used by MinMaxCAM's mask H_m (differentiable, with an ``eps``) and by the WSOL metrics and panels
(``callbacks.wsol.functional.normalize_cams``, which resizes first and zeroes constant maps).
"""

from __future__ import annotations

from torch import Tensor


def minmax_normalize(maps: Tensor, eps: float = 0.0) -> Tensor:
    """``(x - min) / (max - min + eps)`` of each map of a (B, ...) batch, differentiable.

    The min and max are per map (everything but the first dimension); their gradient reaches
    the selected element. With ``eps = 0`` a constant map divides by zero.
    """
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (maps.dim() - 1)
    return (maps - low.view(shape)) / (high - low + eps).view(shape)
