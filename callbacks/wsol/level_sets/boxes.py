"""IoU of one contour box with the ground-truth boxes of its image, inside numba code."""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def best_iou(x0, y0, x1, y1, gt, num_gt, one):
    """Best IoU of the box (x0, y0, x1, y1) with the first ``num_gt`` rows of ``gt``."""
    best = 0.0
    area = (x1 - x0 + one) * (y1 - y0 + one)
    for g in range(num_gt):
        w = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + one
        h = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + one
        inter = w * h if w > 0 and h > 0 else 0
        union = area + (gt[g, 2] - gt[g, 0] + one) * (gt[g, 3] - gt[g, 1] + one) - inter
        if union > 0:
            best = max(best, inter / union)
    return best
