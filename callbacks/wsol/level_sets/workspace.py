"""The buffers of one thread's analysis, sized for (H, W) maps and reused from map to map.

``Workspace`` names them (numba reads a namedtuple's fields like local variables). Sizes:
rows cut into rise-then-fall segments hold at most ``H W / 2 + H`` segments (a segment that
starts at a local minimum has at least two pixels); regions meet along at most 6 edges per segment
(``components``); the floods of ``holes`` keep per-pixel state.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

Workspace = namedtuple(
    "Workspace",
    [
        "seg_start",  # (S,) flat index of each segment's first pixel
        "seg_top",  # (S,) flat index of each segment's largest pixel
        "seg_region",  # (S,) region of each segment
        "seg_parent",  # (S,) segment each one hangs on (itself at a region's top)
        "edges",  # (3 E,) region edges, read as (E, 3) rows of EDGE_LEVEL, EDGE_A, EDGE_B
        "row_first",  # (H + 1,) first segment of each row; row_first[H] = number of segments
        "minima",  # (H W,) the 4-local minima that start floods
        "flood_stamp",  # (H W,) flood that last queued each pixel
        "queue_link",  # (H W,) next pixel in the same bucket of the flood's queue
        "queue_y",  # (H W,) row of a queued pixel
        "queue_x",  # (H W,) column of a queued pixel
        "taken_in",  # (H W,) image stamp of the pixels an earlier flood took in
        "taken_at",  # (H W,) the flood level it took them in at
        "next_stamp",  # (1,) the next flood stamp (stamps stay unique across maps)
    ],
)

EDGE_LEVEL, EDGE_A, EDGE_B = 0, 1, 2  # columns of an edge: largest level joining, two regions


@numba.njit(cache=True, nogil=True)
def max_segments(height, width):
    """An upper bound on the rise-then-fall segments of a (height, width) map."""
    return height * width // 2 + height + 1


@numba.njit(cache=True, nogil=True)
def max_edges(segments):
    """An upper bound on the edges between the regions of ``segments`` segments."""
    return 6 * segments + 8


@numba.njit(cache=True, nogil=True)
def workspace(height, width):
    """A ``Workspace`` for (height, width) maps."""
    n = height * width
    segments = max_segments(height, width)
    return Workspace(
        np.empty(segments, dtype=np.int32),
        np.empty(segments, dtype=np.int32),
        np.empty(segments, dtype=np.int32),
        np.empty(segments, dtype=np.int32),
        np.empty(3 * max_edges(segments), dtype=np.int32),
        np.empty(height + 1, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.full(n, -1, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.zeros(n, dtype=np.int32),
        np.zeros(n, dtype=np.int32),
        np.zeros(1, dtype=np.int32),
    )
