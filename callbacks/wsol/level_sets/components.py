"""The 8-connected components of ``s8 > L`` at every level L at once, from the regions.

Package docstring, "Components": regions above L joined by their edges above L, with per-region
tables over the levels (box, quad counts) for the boxes and areas.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

from callbacks.wsol.level_sets.boxes import best_iou
from callbacks.wsol.level_sets.choice import pays_to_analyse
from callbacks.wsol.level_sets.segments import regions, row_segments
from callbacks.wsol.level_sets.workspace import EDGE_A, EDGE_B, EDGE_LEVEL, max_edges

X0, Y0, X1, Y1, AREA = 0, 1, 2, 3, 4  # columns of a box, and a component's doubled quad area

LevelComponents = namedtuple(
    "LevelComponents",
    [
        "count",  # (T,) number of components at each level
        "best_iou",  # (T,) best GT IoU of any component's box
        "largest_iou",  # (T,) GT IoU of the box of the component of largest quad area
        "largest_area",  # (T,) that doubled quad area
        "second_area",  # (T,) the second largest doubled quad area
        "others_bound",  # (T,) the largest doubled area any other component's box encloses
    ],
)

RowSegments = namedtuple(
    "RowSegments",
    [
        "starts",  # (S,) flat index of each segment's first pixel (``Workspace.seg_start``)
        "regions",  # (S,) region of each segment (``Workspace.seg_region``)
        "first",  # the row's first segment
        "last",  # one past the row's last segment
    ],
)

Regions = namedtuple(
    "Regions",
    [
        "peak",  # (R,) largest value of each region
        "extent",  # (R, 4) X0, Y0, X1, Y1 of all its pixels
        "row_profile",  # (R, H) its largest value in each row (-1: none)
        "col_profile",  # (R, W) its largest value in each column (-1: none)
        "quads",  # (R, 2, T + 1) its quads by levels below their smallest, second smallest value
    ],
)


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
    whenever three pixels do: inside a segment of row y, that segment's region. ``segments``:
    row y's ``RowSegments``; ``counts`` is (regions, 2, levels + 1),
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
    starts, regions, first, last = segments.starts, segments.regions, segments.first, segments.last
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
def level_components_table(num_levels):
    """An empty ``LevelComponents`` (zeros) for ``num_levels`` levels."""
    counts = [np.zeros(num_levels, dtype=np.int64) for _ in range(4)]
    return LevelComponents(
        counts[0], np.zeros(num_levels), np.zeros(num_levels), counts[1], counts[2], counts[3]
    )


@numba.njit(cache=True, nogil=True)
def level_components(u, s8, levels, areas, auto, cap, gt, num_gt, one, table, work):
    """Components of ``s8 > L`` (8-connected) at every level L of the ascending ``levels``.

    Fills the ``LevelComponents`` ``table``; the areas and bounds only with ``areas``. Boxes are
    [WSOL]'s, ``(x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1))``. Returns the number of
    regions (local maxima), or -1 (nothing done) when there are more than ``cap`` or, with
    ``auto``, when the analysis would not pay (``choice.pays_to_analyse``). ``work``: a
    ``Workspace``.
    """
    num_segments = row_segments(u, work.seg_start, work.seg_top, work.row_first)
    if auto and not pays_to_analyse(s8, num_segments):
        return -1
    num_regions = regions(
        u,
        work.seg_start,
        work.seg_top,
        work.row_first,
        num_segments,
        work.seg_region,
        work.seg_parent,
        cap,
    )
    if num_regions < 0:
        return -1
    edges = work.edges[: 3 * max_edges(num_segments)].reshape(-1, 3)
    found, num_edges = _scan_regions(s8, levels, areas, num_regions, edges, work)
    box, area2 = _level_tables(found, levels, areas)
    edges = edges[:num_edges]
    _sweep_levels(found.peak, edges, box, area2, levels, areas, s8.shape, gt, num_gt, one, table)
    return num_regions


@numba.njit(cache=True, nogil=True)
def _new_regions(num_regions, height, width, num_levels, areas):
    """``Regions`` before the scan: empty extents and profiles, no quads (none without area)."""
    extent = np.empty((num_regions, 4), dtype=np.int64)
    extent[:, X0], extent[:, Y0] = np.iinfo(np.int64).max, np.iinfo(np.int64).max
    extent[:, X1], extent[:, Y1] = -1, -1
    return Regions(
        np.zeros(num_regions, dtype=np.int64),
        extent,
        np.full((num_regions, height), -1, dtype=np.int16),
        np.full((num_regions, width), -1, dtype=np.int16),
        np.zeros((num_regions if areas else 0, 2, num_levels + 1), dtype=np.int32),
    )


@numba.njit(cache=True, nogil=True)
def _scan_regions(s8, levels, areas, num_regions, edges, work):
    """One pass over the rows: each region's ``Regions`` entries, and the edges between regions.

    Returns the ``Regions`` (quads only with ``areas``) and the number of edges written to
    ``edges`` (rows of EDGE_LEVEL, EDGE_A, EDGE_B; the level is the largest L at which the two
    regions touch, 8-connected, above L).
    """
    height, width = s8.shape
    found = _new_regions(num_regions, height, width, levels.size, areas)
    # levels below each value, unsigned (no wrap-around test on indices read from memory)
    level_index = np.searchsorted(levels, np.arange(256), side="left").astype(np.uint32)
    lowest, second = np.empty(width, dtype=np.uint8), np.empty(width, dtype=np.uint8)
    num_edges = 0
    t, seg_start, region, row_first = s8.ravel(), work.seg_start, work.seg_region, work.row_first
    for y in range(height):
        first, last = row_first[y], row_first[y + 1]
        segments = RowSegments(seg_start, region, first, last)
        num_edges = _row_regions(t, width, y, segments, work.seg_top, found, edges, num_edges)
        if y + 1 == height:
            continue
        if areas:
            _quad_counts(s8, y, segments, level_index, lowest, second, found.quads)
        below = RowSegments(seg_start, region, last, row_first[y + 2])
        num_edges = _edges_below(t, width, y, segments, below, edges, num_edges)
    return found, num_edges


# the per-row and per-level steps are inlined: a call per row or level costs more than the step
@numba.njit(cache=True, nogil=True, inline="always")
def _row_regions(t, width, y, segments, seg_top, found, edges, num_edges):
    """Add row y's ``segments`` to their regions, and the edges across their cuts.

    ``t``: the flat uint8 map; ``segments``: row y's ``RowSegments``. Returns the new number
    of edges.
    """
    seg_start, region, first, last = (
        segments.starts,
        segments.regions,
        segments.first,
        segments.last,
    )
    peak, row_profile, extent, col_profile = (
        found.peak,
        found.row_profile,
        found.extent,
        found.col_profile,
    )
    base = y * width
    for s in range(first, last):
        r = region[s]
        x0 = seg_start[s] - base
        x1 = (seg_start[s + 1] if s + 1 < last else base + width) - 1 - base
        top = np.int64(t[seg_top[s]])
        peak[r] = max(peak[r], top)
        row_profile[r, y] = max(row_profile[r, y], top)
        extent[r, X0], extent[r, Y0] = min(extent[r, X0], x0), min(extent[r, Y0], y)
        extent[r, X1], extent[r, Y1] = max(extent[r, X1], x1), max(extent[r, Y1], y)
        cols, pixels = col_profile[r, x0 : x1 + 1], t[base + x0 : base + x1 + 1]
        for x in range(np.uint64(pixels.size)):  # unsigned: no negative-index wrap-around
            cols[x] = max(cols[x], pixels[x])
        if s + 1 < last and region[s + 1] != r:  # horizontal neighbours across the cut
            edges[num_edges, EDGE_LEVEL] = min(t[base + x1], t[base + x1 + 1])
            edges[num_edges, EDGE_A], edges[num_edges, EDGE_B] = r, region[s + 1]
            num_edges += 1
    return num_edges


@numba.njit(cache=True, nogil=True, inline="always")
def _edges_below(t, width, y, segments, below, edges, num_edges):
    """Edges between the regions of rows y and y + 1 (vertical and diagonal neighbours).

    Walks the ``RowSegments`` of row y and those ``below`` in step, pairing each segment of
    row y with those of row y + 1 that it touches 8-connected. Returns the new number of edges.
    """
    seg_start, region, first, last = (
        segments.starts,
        segments.regions,
        segments.first,
        segments.last,
    )
    j, below_last = below.first, below.last
    base = y * width
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
                edges[num_edges, EDGE_LEVEL] = best
                edges[num_edges, EDGE_A], edges[num_edges, EDGE_B] = region[s], region[i]
                num_edges += 1
            i += 1
    return num_edges


@numba.njit(cache=True, nogil=True)
def _level_tables(found, levels, areas):
    """Per region and level: the box of its part above L, (4, R, T), and its doubled quad area.

    The box rows are X0, Y0, X1, Y1; the areas (R, T) stay zero without ``areas``.
    """
    num_regions, num_levels = found.peak.size, levels.size
    box = np.empty((4, num_regions, num_levels), dtype=np.int16)
    area2 = np.zeros((num_regions, num_levels), dtype=np.int64)
    for r in range(num_regions):
        x0, y0, x1, y1 = (
            found.extent[r, X0],
            found.extent[r, Y0],
            found.extent[r, X1],
            found.extent[r, Y1],
        )
        _first_above(found.row_profile[r], y0, y1, 1, levels, box[Y0], r)
        _first_above(found.row_profile[r], y1, y0, -1, levels, box[Y1], r)
        _first_above(found.col_profile[r], x0, x1, 1, levels, box[X0], r)
        _first_above(found.col_profile[r], x1, x0, -1, levels, box[X1], r)
        if areas:
            total = 0
            for k in range(num_levels - 1, -1, -1):
                total += found.quads[r, 0, k + 1] + found.quads[r, 1, k + 1]
                area2[r, k] = total
    return box, area2


@numba.njit(cache=True, nogil=True)
def _sweep_levels(peak, edges, box, area2, levels, areas, shape, gt, num_gt, one, table):
    """Sweep the levels downwards: regions above L, joined by the edges above L.

    A union-find over the regions; at each level the components' boxes and areas are summed
    over their regions (``_component_totals``) and scored into ``table`` (``_score_level``).
    """
    num_regions, num_edges = peak.size, edges.shape[0]
    order = _descending(peak, num_regions)
    edge_order = _descending(edges[:, EDGE_LEVEL], num_edges)
    parent = np.arange(num_regions)
    totals = np.empty((num_regions, 5), dtype=np.int64)  # X0, Y0, X1, Y1, AREA of each root
    alive, e, components = 0, 0, 0
    for k in range(levels.size - 1, -1, -1):
        level = levels[k]
        while alive < num_regions and peak[order[alive]] > level:
            alive += 1
            components += 1
        while e < num_edges and edges[edge_order[e], EDGE_LEVEL] > level:
            ra = _find(parent, edges[edge_order[e], EDGE_A])
            rb = _find(parent, edges[edge_order[e], EDGE_B])
            e += 1
            if ra != rb:
                parent[rb] = ra
                components -= 1
        table.count[k] = components
        if components == 0:
            continue
        _component_totals(k, order[:alive], parent, box, area2, shape, totals)
        _score_level(k, order[:alive], parent, totals, areas, shape, gt, num_gt, one, table)


@numba.njit(cache=True, nogil=True, inline="always")
def _component_totals(k, alive, parent, box, area2, shape, totals):
    """``totals`` of each component root at level k: the union of its regions' boxes, the sum
    of their doubled quad areas."""
    height, width = shape
    for i in alive:
        r = _find(parent, i)
        totals[r, X0], totals[r, Y0], totals[r, X1], totals[r, Y1] = width, height, -1, -1
        totals[r, AREA] = 0
    for i in alive:
        r = _find(parent, i)
        totals[r, X0] = min(totals[r, X0], box[X0, i, k])
        totals[r, Y0] = min(totals[r, Y0], box[Y0, i, k])
        totals[r, X1] = max(totals[r, X1], box[X1, i, k])
        totals[r, Y1] = max(totals[r, Y1], box[Y1, i, k])
        totals[r, AREA] += area2[i, k]


@numba.njit(cache=True, nogil=True, inline="always")
def _score_level(k, alive, parent, totals, areas, shape, gt, num_gt, one, table):
    """Level k's row of ``table`` from the components' ``totals`` (roots among ``alive``)."""
    height, width = shape
    best, largest, second, largest_iou, owner = 0.0, -1, -1, 0.0, -1
    for r in alive:
        if parent[r] != r:
            continue
        iou = best_iou(
            totals[r, X0],
            totals[r, Y0],
            min(totals[r, X1] + 1, width - 1),
            min(totals[r, Y1] + 1, height - 1),
            gt,
            num_gt,
            one,
        )
        best = max(best, iou)
        if totals[r, AREA] > largest:
            second, largest, largest_iou, owner = largest, totals[r, AREA], iou, r
        elif totals[r, AREA] > second:
            second = totals[r, AREA]
    table.best_iou[k], table.largest_iou[k] = best, largest_iou
    table.largest_area[k], table.second_area[k] = largest, second
    if areas and table.count[k] > 1:
        # a contour through pixel centres encloses at most its box, (x1 - x0)(y1 - y0)
        bound = 0
        for r in alive:
            if parent[r] == r and r != owner:
                width_r, height_r = totals[r, X1] - totals[r, X0], totals[r, Y1] - totals[r, Y0]
                bound = max(bound, 2 * width_r * height_r)
        table.others_bound[k] = bound
