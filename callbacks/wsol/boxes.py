"""Boxes of thresholded score maps, exactly as the WSOL reference extracts them, and fast.

[WSOL] (clovaai/wsolevaluation, ``evaluation.py``; rules recorded in ``shared/specs/minmaxcam.md``)
turns a score map into ``s8 = uint8(map * 255)`` (truncation), cuts it at ``s8 > int(tau *
max(s8))`` for every threshold tau, runs ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` and
boxes the largest contour by ``cv2.contourArea`` (MaxBoxAcc) or every contour (V2) as ``(x, y,
min(x + w, W - 1), min(y + h, H - 1))``. No code was copied from that repository.

Speed. The straightforward evaluation runs ``cv2.findContours`` on the whole map 100 times per
image. Here every threshold of a map is answered from one analysis of its level sets
(``callbacks/wsol/level_sets/``: the components and holes of all cuts from a few passes over the
pixels), with images spread over threads. ``method`` chooses the path: ``"level_sets"`` analyses
every map; ``"cv2"`` is the plain path, ``cv2.findContours`` per map and threshold, for every
map; ``"auto"`` (the default) analyses the maps where that pays and leaves the others to cv2
(``level_sets.choice``: not where the float map has many row segments but its uint8 cuts short
boundaries, as a few uint8 steps of noise on a smooth map). The few (image, threshold) pairs
the analysis leaves open (two components of equal area for MaxBoxAcc) go through
``cv2.findContours`` too. All three equal the straightforward implementation exactly (tested).
"""

from __future__ import annotations

import os
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from callbacks.wsol.level_sets import ALL, LARGEST, NAN, OUT_OF_RANGE, TO_CV2, analyse
from callbacks.wsol.level_sets.boxes import contour_ious, pairwise_ious

Method = Literal["auto", "level_sets", "cv2"]


def scoremaps_to_uint8(maps: Tensor) -> Tensor:
    """``uint8(map * 255)`` with truncation, as the reference, on the maps' device.

    Raises ``ValueError`` on NaN or on values outside [0, 1].
    """
    maps = torch.as_tensor(maps).detach().double()
    if maps.numel():
        low, high = torch.aminmax(maps)  # a NaN anywhere makes both NaN
        if torch.isnan(low):
            raise ValueError("score map contains NaN")
        if low < 0 or high > 1:
            raise ValueError("score maps must lie in [0, 1]")
    return (maps * 255).to(torch.uint8)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, inclusive: bool = True) -> np.ndarray:
    """IoU of every pair of (x0, y0, x1, y1) boxes, (..., n, 4) x (..., m, 4) -> (..., n, m).

    ``inclusive`` counts pixels (width ``x1 - x0 + 1``) as [WSOL]; a zero denominator gives 0.
    The one IoU of the package (``level_sets.boxes.iou``), over all pairs.
    """
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.ascontiguousarray(np.broadcast_to(a, lead + a.shape[-2:])).reshape(-1, *a.shape[-2:])
    b = np.ascontiguousarray(np.broadcast_to(b, lead + b.shape[-2:])).reshape(-1, *b.shape[-2:])
    out = np.empty((a.shape[0], a.shape[1], b.shape[1]))
    pairwise_ious(a, b, 1.0 if inclusive else 0.0, out)
    return out.reshape(lead + out.shape[1:])


def contour_boxes(mask: np.ndarray, multi_contour: bool, offset=(0, 0), size=None) -> np.ndarray:
    """Boxes of the contours of one binary uint8 mask, exactly as [WSOL] (cv2 contours).

    Args:
        mask: (h, w) uint8 in {0, 255}.
        multi_contour: All contours (V2) instead of the largest by ``cv2.contourArea``.
        offset: (x, y) added to the contour points (for a crop of a larger map).
        size: (W, H) of the full map for the clipping of x1, y1; defaults to the mask's size.

    Returns:
        (n, 4) int boxes; ``[[0, 0, 0, 0]]`` when there is no contour.
    """
    width, height = size if size is not None else (mask.shape[1], mask.shape[0])
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset)[-2]
    return _boxes_of(contours, multi_contour, width, height)


def _boxes_of(contours, multi_contour: bool, width: int, height: int) -> np.ndarray:
    """(n, 4) [WSOL] boxes of cv2 ``contours`` (all, or the largest); ``[[0, 0, 0, 0]]`` if none."""
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64).reshape(-1, 4)
    x1 = np.minimum(rects[:, 0] + rects[:, 2], width - 1)
    y1 = np.minimum(rects[:, 1] + rects[:, 3], height - 1)
    return np.stack([rects[:, 0], rects[:, 1], x1, y1], axis=1)


def boxes_from_scoremap(
    scoremap: Tensor | np.ndarray, thresholds: np.ndarray, multi_contour: bool = False
) -> list[np.ndarray]:
    """Estimated boxes of one (H, W) score map in [0, 1] at each threshold, one cv2 call each.

    The straightforward path (used for panels and the golden tests); ``max_box_ious`` is the
    batched one. Raises ``ValueError`` on NaN.
    """
    s8 = scoremaps_to_uint8(torch.as_tensor(np.asarray(scoremap))[None])[0].numpy()
    peak = float(s8.max())
    return [
        contour_boxes(((s8 > int(tau * peak)) * 255).astype(np.uint8), multi_contour)
        for tau in thresholds
    ]


def _integer_levels(s8: Tensor, thresholds: np.ndarray) -> Tensor:
    """(B, T) integer cut levels ``int(tau * max(s8))`` of each map, as the reference."""
    peaks = s8.flatten(1).amax(1).double()
    taus = torch.as_tensor(thresholds, dtype=torch.float64, device=s8.device)
    return torch.floor(taus[None, :] * peaks[:, None]).long()


def max_box_ious(
    maps: Tensor,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    multi_contour: bool,
    inclusive: bool = True,
    workers: int | None = None,
    method: Method = "auto",
) -> np.ndarray:
    """Best IoU with any GT box of the box(es) estimated at every CAM threshold.

    Args:
        maps: (B, H, W) score maps in [0, 1] (normalized CAMs), on any device.
        gt_boxes: B arrays (n_i, 4) of (x0, y0, x1, y1) inclusive GT boxes in map pixels.
        thresholds: (T,) CAM thresholds in [0, 1).
        multi_contour: The contour rule: all contours (MaxBoxAccV2) instead of the largest
            (MaxBoxAcc).
        inclusive: Inclusive-pixel IoU ([WSOL]); False for the thesis author's variant.
        workers: Threads sharing the images (``None``: one per available CPU core, up to 8).
        method: ``"level_sets"`` analyses every map's level sets; ``"cv2"`` runs
            ``cv2.findContours`` per map and threshold (the plain path); ``"auto"`` analyses
            the maps where that pays and leaves the others to cv2 (``level_sets.choice``).
            The results are the same.

    Returns:
        (B, T) float64 IoUs.
    """
    rule = (multi_contour,)
    return max_box_ious_per_rule(
        maps, gt_boxes, thresholds, rule, inclusive, workers, method=method
    )[0]


def max_box_ious_per_rule(
    maps: Tensor,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    multi_contour: tuple[bool, ...] = (False, True),
    inclusive: bool = True,
    workers: int | None = None,
    taps: tuple[np.ndarray, ...] | None = None,
    method: Method = "auto",
) -> list[np.ndarray]:
    """``max_box_ious`` for several values of the contour rule ``multi_contour``, one analysis.

    MaxBoxAcc and MaxBoxAccV2 of the same maps share the level-set analysis; this runs it once.
    Arguments as ``max_box_ious``; returns one (B, T) array per ``multi_contour`` value. With
    ``taps`` (the resize: ``functional.resize_taps`` of the rows + ``resize_bands`` of the
    columns), ``maps`` are raw (B, h, w) CAMs, resized and min-max normalized as
    ``normalize_cams`` on the CPU, in the threads of the analysis. Raises ``ValueError`` on NaN
    or out-of-range maps and on an image without GT box.
    """
    images = torch.as_tensor(maps).detach().double().cpu().numpy()
    if len(gt_boxes) != len(images):
        raise ValueError(f"got {len(gt_boxes)} box sets for {len(images)} maps")
    gt, num_gt = _pad_boxes(gt_boxes)
    threads = available_threads(workers)
    analysis = analyse(
        images, thresholds, gt, num_gt, inclusive, multi_contour, taps, threads, method
    )
    return _finish_with_cv2(analysis, gt_boxes, multi_contour, inclusive)


def _finish_with_cv2(analysis, gt_boxes, multi_contour, inclusive) -> list[np.ndarray]:
    """The ``Analysis``'s IoUs, with what it left to cv2 (whole maps, single levels) filled in.

    One thread: most of cv2's time goes to making the contour arrays, under the GIL.
    """
    s8, levels, found, status = analysis.s8, analysis.levels, analysis.ious, analysis.status
    if (status == NAN).any():
        raise ValueError("score map contains NaN")
    if (status == OUT_OF_RANGE).any():
        raise ValueError("score maps must lie in [0, 1]")
    # what the analysis left open goes through cv2: whole maps, or single levels
    whole = status == TO_CV2
    pairs = [(b, k) for b in np.flatnonzero(whole) for k in range(levels.shape[1])]
    if False in multi_contour:
        pairs += [tuple(p) for p in np.argwhere(analysis.undecided & ~whole[:, None])]
    if pairs:
        gts = [np.asarray(g, dtype=np.int64).reshape(-1, 4) for g in gt_boxes]
        contour = _contour_ious(s8, levels.tolist(), gts, inclusive, pairs)
        rows, cols = np.array(pairs).T
        found[rows, LARGEST, cols] = contour[:, LARGEST]
        found[rows[whole[rows]], ALL, cols[whole[rows]]] = contour[whole[rows], ALL]
    return [found[:, int(multi)].copy() for multi in multi_contour]


def available_threads(workers: int | None) -> int:
    """``workers``, or with ``None`` the CPU cores this process may use, at most 8.

    The cap keeps several processes on one node (DDP ranks) from oversubscribing it.
    """
    if workers is not None:
        if workers < 1:
            raise ValueError(f"`workers` must be at least 1, got {workers}")
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


def _contour_ious(s8, levels, gts, inclusive, pairs) -> np.ndarray:
    """(P, 2) best IoU of the largest contour's box and of any contour's box for each pair.

    The plain path: ``cv2.findContours`` of each (image, level) pair's foreground, the boxes
    and areas of its contours read in one pass (``level_sets.boxes.contour_ious``).
    ``levels``: lists of each image's levels; ``gts``: (n_i, 4) int64 GT boxes of each image.
    """
    height, width = s8.shape[-2:]
    one = 1 if inclusive else 0
    out = np.zeros((len(pairs), 2))
    no_points = np.zeros((0, 2), dtype=np.int32)
    for i, (b, k) in enumerate(pairs):
        mask = cv2.threshold(s8[b], levels[b][k], 255, cv2.THRESH_BINARY)[1]  # s8 > level
        contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        points = np.concatenate(contours).reshape(-1, 2) if contours else no_points
        ends = np.cumsum(np.fromiter(map(len, contours), np.int64, len(contours)))
        out[i] = contour_ious(points, ends, width, height, gts[b], one)
    return out


def _pad_boxes(gt_boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged (n_i, 4) GT boxes into (B, G, 4), padding with each image's first box.

    Returns the stack and the (B,) counts n_i.
    """
    arrays = [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in gt_boxes]
    if any(len(a) == 0 for a in arrays):
        raise ValueError("every image needs at least one ground-truth box")
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    most = counts.max()
    if (counts == most).all():
        return np.stack(arrays), counts
    stack = np.stack([np.concatenate([a, np.repeat(a[:1], most - len(a), 0)]) for a in arrays])
    return stack, counts
