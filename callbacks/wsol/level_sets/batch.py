"""``analyse``: the level-set analysis of a batch of maps, runs of images on worker threads."""

from __future__ import annotations

import itertools
import os
import threading
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from callbacks.wsol.level_sets.compile_notice import compile_notice
from callbacks.wsol.level_sets.image import image_ious
from callbacks.wsol.level_sets.maps import OK, TO_CV2, prepare
from callbacks.wsol.level_sets.workspace import workspace

AUTO, LEVEL_SETS, CV2 = 0, 1, 2
METHODS = {"auto": AUTO, "level_sets": LEVEL_SETS, "cv2": CV2}  # the methods, as numba sees them

Analysis = namedtuple(
    "Analysis",
    [
        "s8",  # (B, H, W) uint8 maps
        "levels",  # (B, T) integer levels, int(tau * max(s8)) as [WSOL]
        "ious",  # (B, 2, T) best GT IoU, rows LARGEST and ALL (``image.py``)
        "undecided",  # (B, T) levels whose largest contour is left to cv2.findContours
        "status",  # (B,) OK, NAN, OUT_OF_RANGE or TO_CV2 (``maps.py``)
        "regions",  # (B,) local maxima of each analysed map (-1: not analysed)
    ],
)

Buffers = namedtuple(
    "Buffers",
    [
        "work",  # a ``Workspace``
        "u",  # (H, W) float64 score map
        "rows",  # (H, w) float64, the first pass of a CAM's resize
    ],
)


@numba.njit(cache=True, nogil=True)
def image_range(
    images,
    raw,
    taps,
    taus,
    gt,
    num_gt,
    inclusive,
    scored,
    method,
    max_regions,
    first,
    last,
    out,
    buffers,
):
    """Prepare and analyse images first..last-1 into the ``Analysis`` ``out`` (releases the GIL).

    ``buffers``: this thread's own ``Buffers``; ``method``: ``AUTO``, ``LEVEL_SETS`` or ``CV2``
    (the maps are only prepared, every one is left to cv2).
    """
    for b in range(first, last):
        out.status[b] = prepare(images[b], raw, taps, buffers.u, buffers.rows, out.s8[b])
        if out.status[b] != OK:
            continue
        peak = np.float64(out.s8[b].max())
        for k in range(taus.size):
            out.levels[b, k] = np.int64(np.floor(taus[k] * peak))  # int(tau * max(s8)), [WSOL]
        if method == CV2:
            out.status[b] = TO_CV2
            continue
        out.regions[b] = image_ious(
            buffers.u,
            out.s8[b],
            out.levels[b],
            gt[b],
            num_gt[b],
            inclusive,
            scored,
            method == AUTO,
            max_regions,
            out.ious[b],
            out.undecided[b],
            buffers.work,
        )
        out.status[b] = OK if out.regions[b] >= 0 else TO_CV2


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
            u, rows = np.empty((height, width)), np.empty((height, cam_width))
            self._local.buffers = Buffers(work, u, rows)
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
    multi_contour: tuple[bool, ...] = (False, True),
    taps: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    threads: int = 1,
    method: str = "level_sets",
    max_regions: int = 2**31 - 1,
) -> Analysis:
    """Box IoUs at every threshold of a batch, runs of images on ``threads`` threads.

    Args:
        images: (B, h, w) raw CAMs, resized by ``taps`` and min-max normalized, or, with
            ``taps`` None, (B, H, W) score maps in [0, 1].
        thresholds: (T,) ascending CAM thresholds; each map is cut at ``int(tau * max(s8))``.
        gt, num_gt: (B, G, 4) int64 inclusive GT boxes and (B,) the real rows of each.
        inclusive: as ``image_ious``.
        multi_contour: The values of the contour rule to score (``image.LARGEST``, ``ALL``).
        taps: the resize (``functional.resize_taps`` of the rows, ``resize_bands`` of the
            columns): (row sources (H, k), row weights (H, k), first outputs (w,), band weights
            (w, n)).
        method: ``"level_sets"`` analyses every map, ``"auto"`` those where it pays
            (``choice.pays_to_analyse``), ``"cv2"`` none; the others get status ``TO_CV2``.
        max_regions: Maps with more local maxima than this are left to cv2 too.

    Returns:
        The ``Analysis``: s8, levels, IoUs (B, 2, T) (largest contour, any contour), undecided
        levels and a status per image.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
    num = len(images)
    if taps is not None:
        height, width = len(taps[0]), int(taps[2][-1] + taps[3].shape[1])
    else:
        height, width = images.shape[1:]
    out = Analysis(
        np.empty((num, height, width), dtype=np.uint8),  # every map's pixels are written
        np.zeros((num, len(thresholds)), dtype=np.int64),
        np.zeros((num, 2, len(thresholds))),
        np.zeros((num, len(thresholds)), dtype=np.bool_),
        np.zeros(num, dtype=np.int64),
        np.full(num, -1, dtype=np.int64),
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
        np.array([False in multi_contour, True in multi_contour]),  # scored[int(multi_contour)]
        METHODS[method],
        max_regions,
    )

    threads = max(1, min(threads, num))
    size = 2 if threads > 1 else num
    runs = itertools.count()  # each thread takes the next run of ``size`` images when it is free

    def work(_: int) -> None:
        buffers = _THREADS.buffers(height, width, images.shape[2])
        while (first := next(runs) * size) < num:
            image_range(*arguments, first, min(first + size, num), out, buffers)

    with compile_notice():  # the first call of a fresh install compiles image_range
        _THREADS.map(work, list(range(threads)), threads)
    return out
