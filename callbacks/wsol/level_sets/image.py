"""One map's best GT IoU at every level: the largest contour's box and any contour's.

Package docstring, "The largest contour": components and holes bound the filled areas; levels
that the bounds leave open are flagged ``undecided`` for ``cv2.findContours``.
"""

from __future__ import annotations

import numba
import numpy as np

from callbacks.wsol.level_sets.boxes import best_iou
from callbacks.wsol.level_sets.components import level_components
from callbacks.wsol.level_sets.holes import level_holes


@numba.njit(cache=True, nogil=True)
def workspace(height, width):
    """Buffers for ``image_ious`` on (height, width) maps, reused from image to image."""
    n = height * width
    segments = n // 2 + height + 1
    stamp = np.full(n, -1, dtype=np.int32)
    return (
        np.empty(segments, dtype=np.int32),  # 0 segment starts
        np.empty(segments, dtype=np.int32),  # 1 segment tops
        np.empty(segments, dtype=np.int32),  # 2 segment regions
        np.empty(segments, dtype=np.int32),  # 3 segment parents
        np.empty(3 * (6 * segments + 8), dtype=np.int32),  # 4 edges
        np.empty(height + 1, dtype=np.int32),  # 5 first segment of each row
        np.empty(n, dtype=np.int32),  # 6 minima
        stamp,  # 7 flood stamps
        np.empty(n, dtype=np.int32),  # 8 bucket-queue links
        np.empty(n, dtype=np.int32),  # 9 rows of queued pixels
        np.empty(n, dtype=np.int32),  # 10 columns of queued pixels
        np.zeros(n, dtype=np.int32),  # 11 image stamp of pixels an earlier flood took in
        np.zeros(n, dtype=np.int32),  # 12 the flood level it took them in at
        np.zeros(1, dtype=np.int32),  # 13 next flood stamp
    )


@numba.njit(cache=True, nogil=True)
def image_ious(
    u, s8, levels, gt, num_gt, inclusive, with_area, every, max_regions, ious, undecided, work
):
    """Best GT IoU of the largest contour's box (``ious[0]``) and of any contour's (``ious[1]``).

    The largest contour is the component of largest filled area, which lies between its quad
    area and that plus the quads around all holes, and within its box. When the quad area of
    one component beats the boxes of all others at every level, MaxBoxAcc needs no holes, and
    without ``every`` their floods are skipped.

    Args:
        u: (H, W) float map of which ``s8`` is a non-decreasing function.
        s8: (H, W) uint8 map, cut at ``s8 > L``.
        levels: (T,) ascending integer levels L.
        gt, num_gt: (G, 4) int64 inclusive GT boxes, of which the first ``num_gt`` are real.
        inclusive: Count box pixels inclusively ([WSOL]).
        with_area: Compute the largest contour (MaxBoxAcc); without, ``ious[0]`` stays 0.
        every: Compute any contour's (MaxBoxAccV2); without, ``ious[1]`` is not meaningful.
        max_regions: Give up (return False) on maps with more local maxima than this.
        ious: (2, T) float64 output.
        undecided: (T,) bool output: levels whose largest contour needs ``cv2.findContours``.
        work: ``workspace(H, W)``.
    """
    num_levels = levels.size
    one = 1 if inclusive else 0
    fg = np.zeros((num_levels, 6))
    if not level_components(u, s8, levels, with_area, max_regions, gt, num_gt, one, fg, work):
        return False
    boxed = (fg[:, 4] <= 1) | (fg[:, 2] > fg[:, 5])  # largest contour known without holes
    bg = np.zeros((num_levels, 2))  # holes: best IoU, quads around them
    if every or (with_area and not boxed.all()):
        level_holes(u, s8, levels, gt, num_gt, one, bg, work)
    empty = best_iou(0, 0, 0, 0, gt, num_gt, one)  # no contour: the reference's (0, 0, 0, 0)
    for k in range(num_levels):
        if fg[k, 4] == 0:
            ious[0, k], ious[1, k] = empty, empty
            continue
        ious[0, k] = fg[k, 1]
        ious[1, k] = max(fg[k, 0], bg[k, 0])
        if with_area and not boxed[k]:
            # filled areas (doubled) lie in [quad area, quad area + 2 * quads around holes]
            undecided[k] = fg[k, 2] <= fg[k, 3] + 2 * bg[k, 1]
    return True
