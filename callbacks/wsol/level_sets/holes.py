"""The holes (bounded 4-connected components of ``s8 <= L``) at every level, by floods.

Package docstring, "Holes": one priority flood from each 4-local minimum off the border.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

from callbacks.wsol.level_sets.boxes import best_iou

LevelHoles = namedtuple(
    "LevelHoles",
    [
        "best_iou",  # (T,) best GT IoU of any hole's box at each level
        "quads",  # (T,) number of quads that touch a hole (an upper bound on the holes' area)
    ],
)


@numba.njit(cache=True, nogil=True)
def level_holes_table(num_levels):
    """An empty ``LevelHoles`` (zeros) for ``num_levels`` levels."""
    return LevelHoles(np.zeros(num_levels), np.zeros(num_levels, dtype=np.int64))


@numba.njit(cache=True, nogil=True)
def level_holes(u, s8, levels, gt, num_gt, one, table, work):
    """Holes (bounded 4-connected components of ``s8 <= L``) at every level of ``levels``.

    Adds the holes to the ``LevelHoles`` ``table``: a hole's box is its pixel box grown by one
    pixel, clipped as [WSOL]; the quads that touch it number (w + 1) (h + 1) for a w x h pixel
    box. ``work``: a ``Workspace`` whose segments ``row_segments`` has filled. Returns the
    number of floods.
    """
    stamp, link, ys, xs = work.flood_stamp, work.queue_link, work.queue_y, work.queue_x
    taken_in, taken_at, serial = work.taken_in, work.taken_at, work.next_stamp
    height, width = s8.shape
    top_level = levels[levels.size - 1]
    t = s8.ravel()
    count = _hole_minima(u, s8, top_level, work)
    minima = work.minima
    # smallest first: a flood that reaches a pixel an earlier flood took in at or below its own
    # level has joined that smaller minimum's component, which its flood reports (or which has
    # reached the border), and stops; so each pixel is flooded about once
    order = np.argsort(u.ravel()[minima[:count]], kind="mergesort")
    mark = serial[0] + count + 1  # marks this image in ``taken_in``
    head = np.full(257, -1, dtype=np.int32)  # bucket queue: one linked stack per flood level
    head[256] = 0  # a sentinel past every level (the queue never empties before the border)
    for i in range(count):
        p = minima[order[i]]
        flood = serial[0] + i  # stamps stay unique across the images sharing ``work``
        x0, y0, x1, y1 = width, height, -1, -1
        k = 0
        while levels[k] < t[p]:
            k += 1
        stamp[p], link[p], ys[p], xs[p] = flood, -1, p // width, p % width
        head[t[p]] = p
        level = np.int64(t[p])
        while True:
            while head[level] < 0:
                level += 1
            # the flood so far is the hole at every level below the next pixel's
            while k < levels.size and levels[k] < level:
                if y1 >= 0:
                    hole_iou = best_iou(
                        x0 - 1,
                        y0 - 1,
                        min(x1 + 2, width - 1),
                        min(y1 + 2, height - 1),
                        gt,
                        num_gt,
                        one,
                    )
                    table.best_iou[k] = max(table.best_iou[k], hole_iou)
                    table.quads[k] += (x1 - x0 + 2) * (y1 - y0 + 2)
                k += 1
            if level > top_level:
                break
            q = head[level]
            head[level] = link[q]
            qy, qx = np.int64(ys[q]), np.int64(xs[q])
            if qy == 0 or qx == 0 or qy == height - 1 or qx == width - 1:
                break  # reached the border: no longer a hole
            if taken_in[q] == mark and taken_at[q] <= level:
                break  # joined a smaller minimum's component
            taken_in[q], taken_at[q] = mark, level
            x0, y0, x1, y1 = min(x0, qx), min(y0, qy), max(x1, qx), max(y1, qy)
            for n, ny, nx in (
                (q - width, qy - 1, qx),
                (q - 1, qy, qx - 1),
                (q + 1, qy, qx + 1),
                (q + width, qy + 1, qx),
            ):
                if stamp[n] != flood:
                    stamp[n], ys[n], xs[n] = flood, ny, nx
                    key = max(level, np.int64(t[n]))
                    link[n] = head[key]
                    head[key] = n
        head[level:256] = -1  # empty the queue for the next flood
    serial[0] = mark + 1
    return count


@numba.njit(cache=True, nogil=True)
def _hole_minima(u, s8, top_level, work):
    """Write the 4-local minima off the border that lie at or below ``top_level`` (every
    other pixel of a hole is larger) to ``work.minima``; returns their number.

    Below both row neighbours, they start segments (``row_segments``): only those are tested.
    """
    height, width = s8.shape
    flat, t = u.ravel(), s8.ravel()
    count = 0
    for s in range(work.row_first[1], work.row_first[height - 1]):
        p = work.seg_start[s]
        x = p % width
        if (
            x == 0
            or t[p] > top_level
            or not (flat[p] < flat[p - width] and flat[p] <= flat[p + width])
        ):
            continue
        work.minima[count] = p
        count += 1
    return count
