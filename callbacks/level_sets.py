"""Contour boxes of a score map at every threshold at once, from its level-set structure.

[WSOL] (clovaai/wsolevaluation, rules in ``shared/specs/minmaxcam.md``) cuts the uint8 map ``s8``
at ``s8 > L`` for each integer level L and boxes the contours of ``cv2.findContours(RETR_TREE)``:
all of them for MaxBoxAccV2, the largest by ``cv2.contourArea`` for MaxBoxAcc. These contours are
known without tracing them (each fact is checked against cv2 in ``tests/test_level_sets.py``):

- there is one outer contour per 8-connected foreground component, whose bounding rectangle is
  the component's pixel box, and one hole contour per bounded 4-connected background component,
  whose rectangle is the hole's pixel box grown by one pixel on every side;
- ``contourArea`` of an outer contour is ``n4 + n3 / 2``, with n4 (n3) the 2 x 2 pixel quads of
  which all four (exactly three) pixels lie in the component with its holes filled;
- a hole's area never exceeds its parent's, and cv2 lists a parent before its holes, so the
  largest contour is the outer contour of the component with the largest filled area;
- no contour's area exceeds ``(x1 - x0)(y1 - y0)``, the box of its pixel centres.

Components, for all levels at once. Order the pixels strictly by (value of the float map ``u``,
flat index); ``s8`` is a non-decreasing function of ``u``, so every ``s8 > L`` is an upper set of
that order. Cut every row into segments that rise, then fall (split before each local minimum of
the row): in a segment each upper set is an interval. Hang each segment on the segment holding
the largest vertical 8-neighbour of its top pixel, when that neighbour is larger still. A tree of
segments then has connected upper sets at every level (a subtree's part at level L, when not
empty, holds the subtree's top pixel, whose larger neighbour lies in the parent's part), and
there is one tree, a *region*, per local maximum of ``u``. The components at level L are the
regions that reach above L, joined where two of them have 8-adjacent pixels both above L. Per
region, tables over the levels (box, quad counts) give each level's components in time
proportional to the number of regions, not of pixels.

Holes. A bounded 4-connected component of ``s8 <= L`` holds a 4-local minimum of ``u`` off the
border: its smallest pixel. A priority flood from each such minimum (4-connected, in order of the
largest value on the way) visits, up to flood level L, exactly that minimum's component at level
L; it stops on reaching the border (no longer a hole) or a smaller minimum (whose own flood
reports the merged hole from then on). Holes are small where maps are smooth, so the floods are
cheap.

The largest contour. A component's filled area lies between its own quad area and that plus
the quads around all holes, and never exceeds the box of its pixel centres. Most levels of
object-like maps are decided by the box bound alone (one component's quad area beats every
other's box), so MaxBoxAcc alone floods the holes only of maps where that fails. One case is
left to ``cv2.findContours``: levels where neither bound separates the largest component from
the others (equal quad areas, or holes too large). Those (image, level) pairs are flagged
``undecided``; maps with more than ``max_regions`` local maxima are not done at all.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _segments(u, seg_start, seg_top, row_first):
    """Cut each row of ``u`` into rise-then-fall segments (order (value, flat index)).

    A segment starts at x = 0 and at each local minimum 0 < x < W - 1 (below both neighbours);
    ``seg_start[s]`` / ``seg_top[s]`` are the flat indices of its first and its largest pixel,
    the one local maximum between two minima; ``row_first[y]`` is the first segment of row y
    (``row_first[H]`` = number of segments). Both kinds of pixel are flagged in one
    vectorized pass over the row, then read off.
    """
    height, width = u.shape
    flags = np.zeros(-(-width // 8) * 8, dtype=np.uint8)  # 1: a segment starts, 2: its top
    words = flags.view(np.uint64)  # read eight flags at a time
    count = 0
    for y in range(height):
        row = u[y]
        # (v, x) < (left, x - 1) iff v < left; (v, x) < (right, x + 1) iff v <= right
        for x in range(1, width - 1):  # minima start segments, maxima are their tops
            v, left, right = row[x], row[x - 1], row[x + 1]
            flags[x] = ((v < left) & (v <= right)) + 2 * ((v >= left) & (v > right))
        flags[0] = 1 | (2 if width == 1 or row[1] < row[0] else 0)
        if width > 1:
            flags[width - 1] = 2 if row[width - 1] >= row[width - 2] else 0
        row_first[y] = count
        base = y * width
        for w in range(words.size):
            if words[w] == 0:
                continue
            for x in range(8 * w, 8 * w + 8):
                f = flags[x]
                if f & 1:
                    seg_start[count] = base + x
                    count += 1
                if f & 2:
                    seg_top[count - 1] = base + x
    row_first[height] = count
    return count


@numba.njit(cache=True, nogil=True)
def _segment_at(seg_start, row_first, y, p):
    """The segment of row y that holds flat pixel index p (binary search over the row's starts)."""
    lo, hi = row_first[y], row_first[y + 1] - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if seg_start[mid] <= p:
            lo = mid
        else:
            hi = mid - 1
    return lo


@numba.njit(cache=True, nogil=True)
def _regions(u, seg_start, seg_top, row_first, num_segments, region, parent, cap):
    """Label the segments with regions (trees hung on larger vertical neighbours).

    Returns the number of regions (``region[s]`` per segment), or -1 when it exceeds ``cap``.
    """
    height, width = u.shape
    flat = u.ravel()
    for s in range(num_segments):
        p = seg_top[s]
        y = p // width
        x = p - y * width
        best, top = p, flat[p]
        for yy in (y - 1, y + 1):
            if yy < 0 or yy >= height:
                continue
            for xx in range(max(x - 1, 0), min(x + 2, width)):
                q = yy * width + xx
                if flat[q] > top or (flat[q] == top and q > best):
                    best, top = q, flat[q]
        parent[s] = s if best == p else _segment_at(seg_start, row_first, best // width, best)
    count = 0
    region[:num_segments] = -1
    for s in range(num_segments):
        if region[s] >= 0:
            continue
        q = s
        while region[q] < 0 and parent[q] != q:
            q = parent[q]
        label = region[q]
        if label < 0:
            if count == cap:
                return -1
            label = count
            region[q] = label
            count += 1
        q = s
        while region[q] < 0:
            region[q] = label
            q = parent[q]
    return count


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
def _best_iou(x0, y0, x1, y1, gt, num_gt, one):
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
def _components(u, s8, levels, with_area, cap, gt, num_gt, one, out, work):
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
    num_segments = _segments(u, seg_start, seg_top, row_first)
    num_regions = _regions(u, seg_start, seg_top, row_first, num_segments, region, parent, cap)
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
            iou = _best_iou(
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


@numba.njit(cache=True, nogil=True)
def _holes(u, s8, levels, gt, num_gt, one, out, work):
    """Holes (bounded 4-connected components of ``s8 <= L``) at every level of ``levels``.

    Adds to ``out[k]`` = (best GT IoU over the holes' boxes, quads around the holes): a hole's
    box is its pixel box grown by one pixel, clipped as [WSOL]; the quads that touch it number
    (w + 1) (h + 1) for a w x h pixel box. ``work``: ``workspace``'s buffers.
    """
    minima, stamp, link, ys, xs, seen, seen_level, serial = work[6:14]
    height, width = s8.shape
    top_level = levels[levels.size - 1]
    flat = u.ravel()
    t = s8.ravel()
    # the 4-local minima in the order (value, index) off the border, low enough to be a hole:
    # below both row neighbours, they start segments (``_segments``)
    seg_start, row_first = work[0], work[5]
    count = 0
    for s in range(row_first[1], row_first[height - 1]):
        p = seg_start[s]
        x = p % width
        if (
            x == 0
            or t[p] > top_level
            or not (flat[p] < flat[p - width] and flat[p] <= flat[p + width])
        ):
            continue
        minima[count] = p
        count += 1
    # smallest first: a flood that reaches a pixel an earlier flood took in at or below its own
    # level has joined that smaller minimum's component, which its flood reports (or which has
    # reached the border), and stops; so each pixel is flooded about once
    order = np.argsort(flat[minima[:count]], kind="mergesort")
    mark = serial[0] + count + 1  # flags of this image in ``seen``
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
                    box_iou = _best_iou(
                        x0 - 1,
                        y0 - 1,
                        min(x1 + 2, width - 1),
                        min(y1 + 2, height - 1),
                        gt,
                        num_gt,
                        one,
                    )
                    out[k, 0] = max(out[k, 0], box_iou)
                    out[k, 1] += (x1 - x0 + 2) * (y1 - y0 + 2)
                k += 1
            if level > top_level:
                break
            q = head[level]
            head[level] = link[q]
            qy, qx = np.int64(ys[q]), np.int64(xs[q])
            if qy == 0 or qx == 0 or qy == height - 1 or qx == width - 1:
                break  # reached the border: no longer a hole
            if seen[q] == mark and seen_level[q] <= level:
                break  # joined a smaller minimum's component
            seen[q], seen_level[q] = mark, level
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
    if not _components(u, s8, levels, with_area, max_regions, gt, num_gt, one, fg, work):
        return False
    boxed = (fg[:, 4] <= 1) | (fg[:, 2] > fg[:, 5])  # largest contour known without holes
    holes = np.zeros((num_levels, 2))
    if every or (with_area and not boxed.all()):
        _holes(u, s8, levels, gt, num_gt, one, holes, work)
    empty = _best_iou(0, 0, 0, 0, gt, num_gt, one)  # no contour: the reference's (0, 0, 0, 0)
    for k in range(num_levels):
        if fg[k, 4] == 0:
            ious[0, k], ious[1, k] = empty, empty
            continue
        ious[0, k] = fg[k, 1]
        ious[1, k] = max(fg[k, 0], holes[k, 0])
        if with_area and not boxed[k]:
            # filled areas (doubled) lie in [quad area, quad area + 2 * quads around holes]
            undecided[k] = fg[k, 2] <= fg[k, 3] + 2 * holes[k, 1]
    return True


OK, NAN, OUT_OF_RANGE, GAVE_UP = 0, 1, 2, 3  # per-image status of ``analyse``


@numba.njit(cache=True, nogil=True)
def _resize(image, taps, out, rows):
    """out = R image C^T, rows first (as ``rows @ image @ cols.T``).

    ``taps`` = (row sources (H, k), row weights (H, k), column bands: first output (w,) and
    weights (w, n) of each source column). Every output sums its terms in ascending source
    order, so both passes vectorize: rows over the h columns, columns over each source's band.
    """
    row_src, row_w, col_first, col_band = taps
    rows[:] = 0.0
    for i in range(out.shape[0]):
        for t in range(row_src.shape[1]):
            w, line, target = row_w[i, t], image[row_src[i, t]], rows[i]
            for j in range(np.uint64(line.size)):  # unsigned: no negative-index wrap-around
                target[j] += w * line[j]
    out[:] = 0.0
    for i in range(out.shape[0]):
        for j in range(col_first.size):
            v, band = rows[i, j], col_band[j]
            target = out[i, col_first[j] : col_first[j] + band.size]
            for m in range(np.uint64(band.size)):
                target[m] += band[m] * v


@numba.njit(cache=True, nogil=True)
def _prepare(image, raw, taps, u, rows, s8):
    """Fill ``u`` with the score map of ``image`` and ``s8`` with ``uint8(u * 255)``; a status.

    A ``raw`` image is a CAM: resized by ``taps`` and min-max normalized (a CAM with a NaN, or
    constant, becomes zeros), as ``functional.normalize_cams``. Otherwise it is already a map,
    which must lie in [0, 1] (status ``NAN`` / ``OUT_OF_RANGE`` otherwise).
    """
    constant = False
    if raw:
        first = image.ravel()[0]
        constant = (image.ravel() == first).all()  # would resize to ripples, not a constant
        _resize(image, taps, u, rows)
    else:
        u[:] = image
    low, high, nan, flat = np.inf, -np.inf, False, u.ravel()
    for p in range(np.uint64(flat.size)):
        v = flat[p]
        nan |= v != v
        low, high = min(low, v), max(high, v)
    if not raw:
        if nan:
            return NAN
        if low < 0 or high > 1:
            return OUT_OF_RANGE
    elif nan or constant or not high > low:
        u[:] = 0.0
        s8[:] = 0
        return OK
    flat, out = u.ravel(), s8.ravel()
    if raw:
        scale = high - low
        for p in range(np.uint64(flat.size)):
            v = (flat[p] - low) / scale
            flat[p] = v
            out[p] = np.uint8(v * 255.0)
    else:
        for p in range(np.uint64(flat.size)):
            out[p] = np.uint8(flat[p] * 255.0)
    return OK


@numba.njit(cache=True, nogil=True)
def _image_range(
    images, raw, taps, taus, gt, num_gt, inclusive, with_area, every, cap, first, last, out, buffers
):
    """Prepare and analyse images first..last-1 (releases the GIL).

    ``buffers`` = (``workspace``, (H, W) float64, (H, w) float64), this thread's own.
    """
    s8, levels, ious, undecided, status = out
    work, u, rows = buffers
    for b in range(first, last):
        status[b] = _prepare(images[b], raw, taps, u, rows, s8[b])
        if status[b] != OK:
            continue
        peak = np.float64(s8[b].max())
        for k in range(taus.size):
            levels[b, k] = np.int64(np.floor(taus[k] * peak))  # int(tau * max(s8)), [WSOL]
        done = image_ious(
            u,
            s8[b],
            levels[b],
            gt[b],
            num_gt[b],
            inclusive,
            with_area,
            every,
            cap,
            ious[b],
            undecided[b],
            work,
        )
        status[b] = OK if done else GAVE_UP


class _Threads:
    """Worker threads kept between calls, each with its own buffers (allocated once per size).

    Starting threads and allocating the workspace for every batch cost about as much as the
    analysis of a few maps; the pool is made again in a forked child, whose copy has no threads.
    """

    def __init__(self) -> None:
        self._pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
        self._local = threading.local()

    def buffers(self, height: int, width: int, cam_width: int) -> tuple:
        key = (height, width, cam_width)
        if getattr(self._local, "key", None) != key:
            work = workspace(height, width)
            self._local.buffers = (work, np.empty((height, width)), np.empty((height, cam_width)))
            self._local.key = key
        return self._local.buffers

    def map(self, function, items: list, threads: int) -> None:
        if threads == 1:
            for item in items:
                function(item)
            return
        key = (os.getpid(), threads)
        if key not in self._pools:
            self._pools[key] = ThreadPoolExecutor(threads, thread_name_prefix="level-sets")
        list(self._pools[key].map(function, items))


_THREADS = _Threads()


def analyse(
    images: np.ndarray,
    thresholds: np.ndarray,
    gt: np.ndarray,
    num_gt: np.ndarray,
    inclusive: bool = True,
    with_area: bool = True,
    taps: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    threads: int = 1,
    max_regions: int = 4096,
    every: bool = True,
) -> tuple[np.ndarray, ...]:
    """Box IoUs at every threshold of a batch, runs of images on ``threads`` threads.

    Args:
        images: (B, h, w) raw CAMs, resized by ``taps`` and min-max normalized, or, with
            ``taps`` None, (B, H, W) score maps in [0, 1].
        thresholds: (T,) ascending CAM thresholds; each map is cut at ``int(tau * max(s8))``.
        gt, num_gt: (B, G, 4) int64 inclusive GT boxes and (B,) the real rows of each.
        inclusive, with_area, every, max_regions: as ``image_ious``.
        taps: the resize (``functional.resize_taps`` of the rows, ``resize_bands`` of the
            columns): (row sources (H, k), row weights (H, k), first outputs (w,), band weights
            (w, n)).

    Returns:
        s8 (B, H, W) uint8, levels (B, T), IoUs (B, 2, T) (largest contour, any contour),
        undecided (B, T) and a status per image (``OK``, ``NAN``, ``OUT_OF_RANGE``, ``GAVE_UP``).
    """
    num = len(images)
    if taps is not None:
        height, width = len(taps[0]), int(taps[2][-1] + taps[3].shape[1])
    else:
        height, width = images.shape[1:]
    out = (
        np.empty((num, height, width), dtype=np.uint8),  # every map's pixels are written
        np.zeros((num, len(thresholds)), dtype=np.int64),
        np.zeros((num, 2, len(thresholds))),
        np.zeros((num, len(thresholds)), dtype=np.bool_),
        np.zeros(num, dtype=np.int64),
    )
    if num == 0:
        return out
    raw = taps is not None
    if not raw:  # placeholders of the right types
        taps = (np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1)), np.zeros(1, np.int64))
        taps += (np.zeros((1, 1)),)
    images = np.ascontiguousarray(images, dtype=np.float64)
    arguments = (
        images,
        raw,
        tuple(np.ascontiguousarray(t) for t in taps),
        np.ascontiguousarray(thresholds, dtype=np.float64),
        np.ascontiguousarray(gt, dtype=np.int64),
        np.ascontiguousarray(num_gt, dtype=np.int64),
        inclusive,
        with_area,
        every,
        max_regions,
    )

    threads = max(1, min(threads, num))
    size = 2 if threads > 1 else num
    runs = itertools.count()  # each thread takes the next run of ``size`` images when it is free

    def work(_: int) -> None:
        buffers = _THREADS.buffers(height, width, images.shape[2])
        while (first := next(runs) * size) < num:
            _image_range(*arguments, first, min(first + size, num), out, buffers)

    _THREADS.map(work, list(range(threads)), threads)
    return out
