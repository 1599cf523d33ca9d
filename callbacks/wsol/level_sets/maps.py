"""Score maps from raw CAMs (resize, min-max normalization) or checked maps, and ``uint8``."""

from __future__ import annotations

import numba
import numpy as np

OK, NAN, OUT_OF_RANGE, TO_CV2 = 0, 1, 2, 3  # per-image status of ``analyse``


@numba.njit(cache=True, nogil=True)
def resize(image, taps, out, rows):
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
def prepare(image, raw, taps, u, rows, s8):
    """Fill ``u`` with the score map of ``image`` and ``s8`` with ``uint8(u * 255)``; a status.

    A ``raw`` image is a CAM: resized by ``taps`` and min-max normalized (a CAM with a NaN, or
    constant, becomes zeros), as ``functional.normalize_cams``. Otherwise it is already a map,
    which must lie in [0, 1] (status ``NAN`` / ``OUT_OF_RANGE`` otherwise).
    """
    constant = False
    if raw:
        first = image.ravel()[0]
        constant = (image.ravel() == first).all()  # would resize to ripples, not a constant
        resize(image, taps, u, rows)
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
