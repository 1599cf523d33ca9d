"""One map's best GT IoU at every level: the largest contour's box and any contour's.

Package docstring, "The largest contour": components and holes bound the filled areas; levels
that the bounds leave open are flagged ``undecided`` for ``cv2.findContours``.
"""

from __future__ import annotations

import numba

from callbacks.wsol.level_sets.boxes import best_iou
from callbacks.wsol.level_sets.components import level_components, level_components_table
from callbacks.wsol.level_sets.holes import level_holes, level_holes_table

# The contour rule ``multi_contour`` of [WSOL]: the box of the largest contour (False,
# MaxBoxAcc) or of every contour (True, MaxBoxAccV2). Results are indexed by int(multi_contour).
LARGEST, ALL = 0, 1


@numba.njit(cache=True, nogil=True)
def image_ious(
    u, s8, levels, gt, num_gt, inclusive, scored, auto, max_regions, ious, undecided, work
):
    """Best GT IoU of the largest contour's box (``ious[LARGEST]``) and any contour's (``ALL``).

    The largest contour is the component of largest filled area, which lies between its quad
    area and that plus the quads around all holes, and within its box. When the quad area of
    one component beats the boxes of all others at every level, the largest contour needs no
    holes, and unless ``ALL`` is scored their floods are skipped.

    Args:
        u: (H, W) float map of which ``s8`` is a non-decreasing function.
        s8: (H, W) uint8 map, cut at ``s8 > L``.
        levels: (T,) ascending integer levels L.
        gt, num_gt: (G, 4) int64 inclusive GT boxes, of which the first ``num_gt`` are real.
        inclusive: Count box pixels inclusively ([WSOL]).
        scored: (2,) bool, which values of ``multi_contour`` to score (``scored[LARGEST]``,
            ``scored[ALL]``); the rows of ``ious`` not scored are not meaningful.
        auto: Leave the map to cv2 (return -1) where the analysis would not pay
            (``choice.pays_to_analyse``).
        max_regions: Leave maps with more local maxima than this to cv2 (return -1).
        ious: (2, T) float64 output.
        undecided: (T,) bool output: levels whose largest contour needs ``cv2.findContours``.
        work: a ``Workspace`` for (H, W) maps.

    Returns:
        The number of regions (local maxima of ``u``), or -1 for a map left to cv2.
    """
    one = 1 if inclusive else 0
    areas = scored[LARGEST]
    components = level_components_table(levels.size)
    num_regions = level_components(
        u, s8, levels, areas, auto, max_regions, gt, num_gt, one, components, work
    )
    if num_regions < 0:
        return -1
    # levels whose largest contour is known without holes
    boxed = (components.count <= 1) | (components.largest_area > components.others_bound)
    holes = level_holes_table(levels.size)
    if scored[ALL] or (areas and not boxed.all()):
        level_holes(u, s8, levels, gt, num_gt, one, holes, work)
    empty = best_iou(0, 0, 0, 0, gt, num_gt, one)  # no contour: the reference's (0, 0, 0, 0)
    for k in range(levels.size):
        if components.count[k] == 0:
            ious[LARGEST, k], ious[ALL, k] = empty, empty
            continue
        ious[LARGEST, k] = components.largest_iou[k]
        ious[ALL, k] = max(components.best_iou[k], holes.best_iou[k])
        if areas and not boxed[k]:
            # filled areas (doubled) lie in [quad area, quad area + 2 * quads around holes]
            bound = components.second_area[k] + 2 * holes.quads[k]
            undecided[k] = components.largest_area[k] <= bound
    return num_regions
