"""``method="auto"``: analyse a map's level sets only where that beats ``cv2.findContours``.

The analysis costs about in proportion to the rise-then-fall row segments of the float map
(the first thing it counts, before its regions); the plain path, ``cv2.findContours`` at every
threshold, to the length of the cuts' boundaries. A map with few segments is analysed; one with
many only while its cuts are long for its number of segments (pixel noise: both large, the
analysis pays). Where the float map has many more segments than its uint8 cuts have boundary
(noise of a few uint8 steps on a smooth map), the analysis costs more than cv2, which then does
the map. The two constants come from timing both paths, one thread each, per 224 px map on
smooth, upsampled, blurred and pixel-noise maps with noise of 0 to 30 % added;
``benchmarks/bench_maxboxacc.py`` reports both paths on several map families.
"""

from __future__ import annotations

import numba
import numpy as np

MIN_SEGMENTS = 4096  # maps with at most this many row segments are always analysed
BOUNDARY_PER_SEGMENT = 0.15  # beyond, analysed while the mean cut boundary is this per segment


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
def pays_to_analyse(s8, num_segments):
    """Whether the analysis of a map cut into ``num_segments`` row segments beats cv2."""
    if num_segments <= MIN_SEGMENTS:
        return True
    return cut_boundary(s8) >= BOUNDARY_PER_SEGMENT * num_segments
