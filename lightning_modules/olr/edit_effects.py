"""How a label edit changes a classifier's probabilities (the spec's synthetic assertion 7).

The classifier C scores the reconstruction of each unedited embedding and of its edit. Adding
label l to negatives should raise C's probability of l; zeroing it on positives should lower it;
neither should move the other (unrelated) labels much. ``row_share`` asks where the decoder reads
the label: in its own row of the embedding, or in the others. The comparison is always edit against
the unedited reconstruction, so what the decoder loses on its own does not count as an effect.

Single-process functions on full arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

__all__ = ["fraction_moved", "other_labels_shift", "row_share"]


def _check(before: Tensor, after: Tensor) -> None:
    if before.shape != after.shape or before.ndim != 2 or before.shape[0] == 0:
        raise ValueError(
            f"before {tuple(before.shape)} and after {tuple(after.shape)} must be the same "
            "(N, L) probabilities with N >= 1"
        )


def fraction_moved(before: Tensor, after: Tensor, label: int, direction: int) -> float:
    """Fraction of images whose probability of ``label`` moved strictly in ``direction``.

    Args:
        before: (N, L) probabilities of the unedited reconstructions.
        after: (N, L) probabilities of the edited reconstructions.
        label: Index of the edited label l.
        direction: +1 (an added label: C(edit)[l] - C(recon)[l] > 0) or -1 (a removed one).
    """
    _check(before, after)
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    delta = (after[:, label] - before[:, label]).double() * direction
    return (delta > 0).double().mean().item()


def other_labels_shift(before: Tensor, after: Tensor, labels: Sequence[int]) -> float:
    """Mean over images and ``labels`` of |C(edit) - C(recon)|: the edit's side effects.

    Args:
        before: (N, L) probabilities of the unedited reconstructions.
        after: (N, L) probabilities of the edited reconstructions.
        labels: Indices of the labels the edit should leave alone (not the edited one).
    """
    _check(before, after)
    if not labels:
        raise ValueError("other_labels_shift needs at least one other label")
    columns = list(labels)
    return (after[:, columns] - before[:, columns]).double().abs().mean().item()


def row_share(
    positives: Tensor, negatives: Tensor, negatives_given_row: Tensor, label: int
) -> dict[str, float]:
    """How much of C's positive-negative gap in ``label`` the label's own row carries.

    Args:
        positives: (N, L) probabilities of the reconstructions of positives.
        negatives: (N, L) probabilities of the reconstructions of negatives.
        negatives_given_row: (N, L) probabilities of the negatives decoded with the label's row
            of the positives (``editing.swap_label``), image i with positive i's row.
        label: Index of the label.

    Returns:
        The three mean probabilities of ``label`` and ``share`` = (negatives given the row -
        negatives) / (positives - negatives): 1 when the row alone carries the label, 0 when
        the decoder reads it from the other rows (NaN when the reconstructions do not separate,
        a gap below 1e-6).
    """
    _check(positives, negatives)
    _check(negatives, negatives_given_row)
    pos, neg, given = (
        p[:, label].double().mean().item() for p in (positives, negatives, negatives_given_row)
    )
    gap = pos - neg
    share = (given - neg) / gap if abs(gap) >= 1e-6 else math.nan
    return {"positives": pos, "negatives": neg, "negatives_given_row": given, "share": share}
