"""``method="auto"``: analyse a map's level sets only where that beats ``cv2.findContours``.

The analysis costs about in proportion to the regions (local maxima of the float map); the
plain path, ``cv2.findContours`` at every threshold, to the length of the cuts' boundaries. A
map with few regions is analysed; one with many only while its cuts are long for its number of
regions (pixel noise: both large, the analysis pays). Where the float map has many more local
maxima than its uint8 cuts have boundary (small noise on a smooth map), the analysis costs more
than cv2, which then does the map. ``benchmarks/bench_maxboxacc.py`` reports both paths on
several map families, by which the two constants are set.
"""

from __future__ import annotations

import numba
import numpy as np

MIN_REGIONS = 1024  # maps with at most this many regions are always analysed
BOUNDARY_PER_REGION = 1.5  # beyond, analysed while the mean cut boundary is this per region


@numba.njit(cache=True, nogil=True)
def cut_boundary(s8):
    """The mean boundary of the cuts ``s8 > L``: 4-neighbour pixel pairs that a cut separates.

    A pair (a, b) is separated by the levels in [min(a, b), max(a, b)), a share
    ``|a - b| / max(s8)`` of the thresholds; summed over all pairs.
    """
    height, width = s8.shape
    total = 0
    for y in range(height):
        row = s8[y]
        for x in range(width - 1):
            total += abs(np.int64(row[x + 1]) - np.int64(row[x]))
        if y + 1 < height:
            below = s8[y + 1]
            for x in range(width):
                total += abs(np.int64(below[x]) - np.int64(row[x]))
    peak = s8.max()
    return total / peak if peak > 0 else 0.0


@numba.njit(cache=True, nogil=True)
def pays_to_analyse(s8, num_regions):
    """Whether the analysis of a map with ``num_regions`` regions beats cv2 (``auto``)."""
    if num_regions <= MIN_REGIONS:
        return True
    return cut_boundary(s8) >= BOUNDARY_PER_REGION * num_regions
