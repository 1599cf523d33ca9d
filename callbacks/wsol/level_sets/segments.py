"""Rows cut into rise-then-fall segments, and the segments hung into regions.

One region (a tree of segments) per local maximum of the map; every upper set of a region is
connected (package docstring, "Components").
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def row_segments(u, seg_start, seg_top, row_first):
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
def segment_at(seg_start, row_first, y, p):
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
def regions(u, seg_start, seg_top, row_first, num_segments, region, parent, cap):
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
        parent[s] = s if best == p else segment_at(seg_start, row_first, best // width, best)
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
