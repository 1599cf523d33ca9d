"""The 8-connected components of ``s8 > L`` at every level L at once, from the regions.

Package docstring, "Components": regions above L joined by their edges above L, with per-region
tables over the levels (box, quad counts) for the boxes and areas.
"""

from __future__ import annotations

import numba
import numpy as np

from callbacks.wsol.level_sets.boxes import best_iou
from callbacks.wsol.level_sets.segments import regions, row_segments


@numba.njit(cache=True, nogil=True)
def _first_above(profile, lo, hi, step, levels, out, row):
    """out[row, k] = first index i (from ``lo`` to ``hi`` by ``step``) with profile[i] > L_k.

    ``levels`` ascend; entries where no index qualifies are left as they are.
    """
    best, k, i = -1, 0, lo
    while i != hi + step:
        v = profile[i]
        if v > best:
            best = v
            while k < levels.size and levels[k] < best:
                out[row, k] = i
                k += 1
        i += step


@numba.njit(cache=True, nogil=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


@numba.njit(cache=True, nogil=True)
def _descending(values, count):
    """Indices 0..count-1 sorted by decreasing ``values`` in 0..255 (counting sort)."""
    hist = np.zeros(257, dtype=np.int64)
    for i in range(count):
        hist[256 - values[i]] += 1
    for v in range(1, 257):
        hist[v] += hist[v - 1]
    order = np.empty(count, dtype=np.int64)
    for i in range(count):
        slot = 255 - values[i]
        order[hist[slot]] = i
        hist[slot] += 1
    return order


@numba.njit(cache=True, nogil=True)
def _quad_counts(s8, y, segments, level_index, lowest, second, counts):
    """Count the quads of rows y, y + 1 by the levels below their smallest and second smallest.

    A quad has all four pixels above L when L is below its smallest value, and three when L is
    below its second smallest; ``level_index[v]`` (unsigned) is the number of levels below v.
    A quad counts for the region of the larger of its two top pixels, which lies above L
    whenever three pixels do: inside a segment of row y, that segment's region. ``segments`` =
    (starts, regions, first, last) of row y's segments; ``counts`` is (regions, 2, levels + 1),
    smallest and second smallest apart; ``lowest`` and ``second`` are (W,) uint8 scratch. (Plain
    unsigned 1-D indexing and a separate pass for the quad values halve the time of this loop.)
    """
    top, bottom = s8[y], s8[y + 1]
    width = top.size
    one = np.uint64(1)
    for x in range(np.uint64(width - 1)):  # unsigned: no negative-index wrap-around
        lo1, hi1 = min(top[x], top[x + one]), max(top[x], top[x + one])
        lo2, hi2 = min(bottom[x], bottom[x + one]), max(bottom[x], bottom[x + one])
        lowest[x] = min(lo1, lo2)
        second[x] = min(max(lo1, lo2), min(hi1, hi2))
    starts, regions, first, last = segments
    base = y * width
    for s in range(first, last):
        x0 = np.uint64(starts[s] - base)
        x1 = np.uint64(starts[s + 1] - base) if s + 1 < last else np.uint64(width)
        r = regions[s]
        low, sec = counts[r, 0], counts[r, 1]
        for x in range(x0, x1 - one):  # quads whose two top pixels lie in the segment
            low[level_index[lowest[x]]] += 1
            sec[level_index[second[x]]] += 1
        if s + 1 < last:  # the quad across the cut counts for the region of its larger top pixel
            x = x1 - one
            if top[x] < top[x1]:
                low, sec = counts[regions[s + 1], 0], counts[regions[s + 1], 1]
            low[level_index[lowest[x]]] += 1
            sec[level_index[second[x]]] += 1


@numba.njit(cache=True, nogil=True)
def level_components(u, s8, levels, with_area, cap, gt, num_gt, one, out, work):
    """Components of ``s8 > L`` (8-connected) at every level L of the ascending ``levels``.

    Writes ``out[k]`` = (best GT IoU over the components' boxes, IoU of the component of largest
    doubled quad area, that area, the second largest, number of components, the largest doubled
    area that any other component's box could enclose); areas and bounds only ``with_area``.
    Boxes are [WSOL]'s, ``(x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1))``.
    Returns False when there are more than ``cap`` regions. ``work``: ``workspace``'s buffers.
    """
    height, width = s8.shape
    num_levels = levels.size
    seg_start, seg_top, region, parent, edges, row_first = work[:6]
    num_segments = row_segments(u, seg_start, seg_top, row_first)
    num_regions = regions(u, seg_start, seg_top, row_first, num_segments, region, parent, cap)
    if num_regions < 0:
        return False
    t = s8.ravel()

    # per-region profiles and extents, and the edges between regions (value: largest L joining)
    peak = np.zeros(num_regions, dtype=np.int64)
    extent = np.empty((num_regions, 4), dtype=np.int64)  # x0, y0, x1, y1 of all its pixels
    extent[:, :2] = np.iinfo(np.int64).max
    extent[:, 2:] = -1
    row_profile = np.full((num_regions, height), -1, dtype=np.int16)
    col_profile = np.full((num_regions, width), -1, dtype=np.int16)
    quads = np.zeros((num_regions if with_area else 0, 2, num_levels + 1), dtype=np.int32)
    # levels below each value, unsigned (no wrap-around test on indices read from memory)
    level_index = np.searchsorted(levels, np.arange(256), side="left").astype(np.uint32)
    lowest, second = np.empty(width, dtype=np.uint8), np.empty(width, dtype=np.uint8)
    edges = edges[: 3 * (6 * num_segments + 8)].reshape(-1, 3)
    num_edges = 0
    for y in range(height):
        first, last = row_first[y], row_first[y + 1]
        base = y * width
        for s in range(first, last):
            r = region[s]
            x0 = seg_start[s] - base
            x1 = (seg_start[s + 1] if s + 1 < last else base + width) - 1 - base
            top = np.int64(t[seg_top[s]])
            peak[r] = max(peak[r], top)
            row_profile[r, y] = max(row_profile[r, y], top)
            extent[r, 0], extent[r, 1] = min(extent[r, 0], x0), min(extent[r, 1], y)
            extent[r, 2], extent[r, 3] = max(extent[r, 2], x1), max(extent[r, 3], y)
            cols, pixels = col_profile[r, x0 : x1 + 1], t[base + x0 : base + x1 + 1]
            for x in range(np.uint64(pixels.size)):  # unsigned: no negative-index wrap-around
                cols[x] = max(cols[x], pixels[x])
            if s + 1 < last and region[s + 1] != r:  # horizontal neighbours across the cut
                edges[num_edges, 0] = min(t[base + x1], t[base + x1 + 1])
                edges[num_edges, 1] = r
                edges[num_edges, 2] = region[s + 1]
                num_edges += 1
        if y + 1 == height:
            continue
        if with_area:
            segments = (seg_start, region, first, last)
            _quad_counts(s8, y, segments, level_index, lowest, second, quads)
        # vertical and diagonal neighbours between the segments of rows y and y + 1
        j, below_last = row_first[y + 1], row_first[y + 2]
        for s in range(first, last):
            a0 = seg_start[s] - base
            a1 = (seg_start[s + 1] if s + 1 < last else base + width) - 1 - base
            while j < below_last:
                b1 = (seg_start[j + 1] if j + 1 < below_last else base + 2 * width) - 1
                if b1 - base - width + 1 >= a0:
                    break
                j += 1
            i = j
            while i < below_last:
                b0 = seg_start[i] - base - width
                if b0 - 1 > a1:
                    break
                b1 = (seg_start[i + 1] if i + 1 < below_last else base + 2 * width) - 1
                b1 -= base + width
                if region[i] != region[s]:
                    best = 0
                    for x in range(max(a0, b0 - 1), min(a1, b1 + 1) + 1):
                        v = np.int64(t[base + x])
                        for xx in range(max(x - 1, b0), min(x + 1, b1) + 1):
                            best = max(best, min(v, np.int64(t[base + width + xx])))
                    edges[num_edges, 0] = best
                    edges[num_edges, 1] = region[s]
                    edges[num_edges, 2] = region[i]
                    num_edges += 1
                i += 1

    # per-region tables over the levels: box of the part above L, doubled quad area
    box = np.empty((4, num_regions, num_levels), dtype=np.int16)
    area2 = np.zeros((num_regions, num_levels), dtype=np.int64)
    for r in range(num_regions):
        x0, y0, x1, y1 = extent[r, 0], extent[r, 1], extent[r, 2], extent[r, 3]
        _first_above(row_profile[r], y0, y1, 1, levels, box[1], r)
        _first_above(row_profile[r], y1, y0, -1, levels, box[3], r)
        _first_above(col_profile[r], x0, x1, 1, levels, box[0], r)
        _first_above(col_profile[r], x1, x0, -1, levels, box[2], r)
        if with_area:
            total = 0
            for k in range(num_levels - 1, -1, -1):
                total += quads[r, 0, k + 1] + quads[r, 1, k + 1]
                area2[r, k] = total

    # sweep the levels downwards: regions above L, joined by the edges above L
    order = _descending(peak, num_regions)
    edge_order = _descending(edges[:num_edges, 0], num_edges)
    parent = np.arange(num_regions)
    acc = np.empty((num_regions, 5), dtype=np.int64)
    alive, e, components = 0, 0, 0
    for k in range(num_levels - 1, -1, -1):
        level = levels[k]
        while alive < num_regions and peak[order[alive]] > level:
            alive += 1
            components += 1
        while e < num_edges and edges[edge_order[e], 0] > level:
            ra = _find(parent, edges[edge_order[e], 1])
            rb = _find(parent, edges[edge_order[e], 2])
            e += 1
            if ra != rb:
                parent[rb] = ra
                components -= 1
        out[k, 4] = components
        if components == 0:
            continue
        for j in range(alive):
            r = _find(parent, order[j])
            acc[r, 0], acc[r, 1], acc[r, 2], acc[r, 3], acc[r, 4] = width, height, -1, -1, 0
        for j in range(alive):
            i = order[j]
            r = _find(parent, i)
            acc[r, 0] = min(acc[r, 0], box[0, i, k])
            acc[r, 1] = min(acc[r, 1], box[1, i, k])
            acc[r, 2] = max(acc[r, 2], box[2, i, k])
            acc[r, 3] = max(acc[r, 3], box[3, i, k])
            acc[r, 4] += area2[i, k]
        best, largest, second, largest_iou, owner = 0.0, -1, -1, 0.0, -1
        for j in range(alive):
            r = order[j]
            if parent[r] != r:
                continue
            iou = best_iou(
                acc[r, 0],
                acc[r, 1],
                min(acc[r, 2] + 1, width - 1),
                min(acc[r, 3] + 1, height - 1),
                gt,
                num_gt,
                one,
            )
            best = max(best, iou)
            if acc[r, 4] > largest:
                second, largest, largest_iou, owner = largest, acc[r, 4], iou, r
            elif acc[r, 4] > second:
                second = acc[r, 4]
        out[k, 0], out[k, 1], out[k, 2], out[k, 3] = best, largest_iou, largest, second
        if with_area and components > 1:
            # a contour through pixel centres encloses at most its box, (x1 - x0)(y1 - y0)
            bound = 0
            for j in range(alive):
                r = order[j]
                if parent[r] == r and r != owner:
                    bound = max(bound, 2 * (acc[r, 2] - acc[r, 0]) * (acc[r, 3] - acc[r, 1]))
            out[k, 5] = bound
    return True
