"""The box IoU of the WSOL metrics: the one definition, callable from numba code and Python.

Boxes are (x0, y0, x1, y1) with inclusive pixel corners; with ``one`` = 1 a box is
``x1 - x0 + 1`` pixels wide, as [WSOL] counts them (``one`` = 0: continuous corners). A zero
union gives 0.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def iou(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1, one):
    """IoU of the boxes (ax0, ay0, ax1, ay1) and (bx0, by0, bx1, by1)."""
    w = min(ax1, bx1) - max(ax0, bx0) + one
    h = min(ay1, by1) - max(ay0, by0) + one
    inter = w * h if w > 0 and h > 0 else 0
    union = (ax1 - ax0 + one) * (ay1 - ay0 + one) + (bx1 - bx0 + one) * (by1 - by0 + one) - inter
    return inter / union if union > 0 else 0.0


@numba.njit(cache=True, nogil=True)
def best_iou(x0, y0, x1, y1, gt, num_gt, one):
    """Best IoU of the box (x0, y0, x1, y1) with the first ``num_gt`` rows of ``gt``."""
    best = 0.0
    for g in range(num_gt):
        best = max(best, iou(x0, y0, x1, y1, gt[g, 0], gt[g, 1], gt[g, 2], gt[g, 3], one))
    return best


@numba.njit(cache=True, nogil=True)
def pairwise_ious(a, b, one, out):
    """out[l, i, j] = IoU of a[l, i] and b[l, j], for (L, n, 4) ``a`` and (L, m, 4) ``b``."""
    for batch in range(a.shape[0]):
        for i in range(a.shape[1]):
            x0, y0, x1, y1 = a[batch, i, 0], a[batch, i, 1], a[batch, i, 2], a[batch, i, 3]
            for j in range(b.shape[1]):
                box = b[batch, j]
                out[batch, i, j] = iou(x0, y0, x1, y1, box[0], box[1], box[2], box[3], one)


@numba.njit(cache=True, nogil=True)
def contour_ious(points, ends, width, height, gt, one):
    """Best GT IoU of the largest contour's box and of any contour's box, from cv2 contours.

    ``points``: the (N, 2) int points of all contours of a (height, width) mask, one after the
    other; ``ends[c]``: one past contour c's last point. A contour's box is its
    ``cv2.boundingRect`` ``(x, y, w, h)`` boxed as [WSOL], ``(x, y, min(x + w, W - 1),
    min(y + h, H - 1))``; its area is ``cv2.contourArea``'s (the shoelace sum, exact on integer
    points), the first of equal areas being the largest. No contour: the box (0, 0, 0, 0).
    """
    if ends.size == 0:
        empty = best_iou(0, 0, 0, 0, gt, gt.shape[0], one)
        return empty, empty
    largest_area, largest_iou, best = -1, 0.0, 0.0
    start = 0
    for c in range(ends.size):
        end = ends[c]
        x0, y0, x1, y1 = width, height, -1, -1
        twice_area = 0
        px, py = np.int64(points[end - 1, 0]), np.int64(points[end - 1, 1])
        for i in range(start, end):
            x, y = np.int64(points[i, 0]), np.int64(points[i, 1])
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
            twice_area += px * y - py * x
            px, py = x, y
        box_iou = best_iou(
            x0, y0, min(x1 + 1, width - 1), min(y1 + 1, height - 1), gt, gt.shape[0], one
        )
        best = max(best, box_iou)
        if abs(twice_area) > largest_area:
            largest_area, largest_iou = abs(twice_area), box_iou
        start = end
    return largest_iou, best
