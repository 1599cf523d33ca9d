"""Boxes of thresholded score maps, exactly as the WSOL reference extracts them, and fast.

[WSOL] (clovaai/wsolevaluation, ``evaluation.py``; rules recorded in ``shared/specs/minmaxcam.md``)
turns a score map into ``s8 = uint8(map * 255)`` (truncation), cuts it at ``s8 > int(tau *
max(s8))`` for every threshold tau, runs ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` and
boxes the largest contour by ``cv2.contourArea`` (MaxBoxAcc) or every contour (V2) as ``(x, y,
min(x + w, W - 1), min(y + h, H - 1))``. No code was copied from that repository.

Speed. The straightforward evaluation runs ``cv2.findContours`` on the whole map 100 times per
image. Here the thresholds of a batch are handled at once: an empty foreground needs no contour,
and, with ``topology``, a threshold whose foreground provably is one 8-connected component (at
most one regional-maximum plateau above it) and, for V2, has no hole (no interior 4-connected
regional-minimum plateau at or below it) has exactly one contour, whose box is the foreground's
bounding box, read from row/column maxima for all thresholds together. The remaining (image,
threshold) pairs go through ``cv2.findContours`` on the cropped foreground only, optionally
spread over threads (OpenCV releases the GIL). Results equal the straightforward implementation
exactly (tested).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


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
    """
    a = np.asarray(boxes_a, dtype=np.float64)[..., :, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[..., None, :, :]
    one = 1.0 if inclusive else 0.0
    area_a = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one)
    area_b = (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
    width = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + one, 0)
    height = np.maximum(
        np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + one, 0
    )
    inter = width * height
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


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


def _foreground_boxes(s8: Tensor, levels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Bounding boxes of ``s8 > level`` for all (image, level) pairs from row and column maxima.

    Returns the [WSOL]-style boxes (B, T, 4) (x1, y1 = max + 1 clipped; zeros when empty), the
    non-empty flags (B, T) and the inclusive extents (B, T, 4) of the foreground pixels.
    """
    height, width = s8.shape[-2:]
    rows = s8.amax(2).long()[:, None, :] > levels[:, :, None]  # (B, T, H)
    cols = s8.amax(1).long()[:, None, :] > levels[:, :, None]  # (B, T, W)
    nonempty = rows.any(-1)
    y0, y1 = rows.int().argmax(-1), height - 1 - rows.flip(-1).int().argmax(-1)
    x0, x1 = cols.int().argmax(-1), width - 1 - cols.flip(-1).int().argmax(-1)
    extent = torch.stack([x0, y0, x1, y1], dim=-1)
    boxes = torch.stack([x0, y0, (x1 + 1).clamp(max=width - 1), (y1 + 1).clamp(max=height - 1)], -1)
    return boxes * nonempty[..., None], nonempty, extent


def _topology(s8: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
    """Which foregrounds ``s8 > level`` are provably one component, and which provably hole-free.

    A component holds a regional-maximum plateau (8-connected) above the level, and a hole holds
    a regional-minimum plateau (4-connected, off the border) at or below it. So one plateau above
    gives one component; no plateau below gives no hole, and then components = Euler number.
    With one component, holes = 1 - Euler number.

    Returns two (B, T) bool tensors: ``single`` (exactly one component) and ``holeless``.
    """
    values = s8.float()[:, None]
    is_max = values >= F.max_pool2d(F.pad(values, (1,) * 4, value=-1.0), 3, 1)
    is_min = values <= _cross_min(values, fill=256.0)
    # a plateau with an equal neighbour outside the flag set is a terrace, not a regional extremum
    others = torch.where(is_max, -1.0, values)
    spoil_max = F.max_pool2d(F.pad(others, (1,) * 4, value=-1.0), 3, 1) == values
    spoil_min = _cross_min(torch.where(is_min, 256.0, values), fill=256.0) == values
    s8_cpu = s8.cpu().numpy()
    peaks = _plateau_histogram(s8_cpu, is_max[:, 0], spoil_max[:, 0], 8, interior=False)
    pits = _plateau_histogram(s8_cpu, is_min[:, 0], spoil_min[:, 0], 4, interior=True)
    above = np.cumsum(peaks[:, ::-1], axis=1)[:, ::-1]  # above[b, v]: plateaus at level >= v
    above = np.concatenate([above, np.zeros((len(s8), 1), dtype=above.dtype)], axis=1)
    below = np.cumsum(pits, axis=1)  # below[b, v]: plateaus at level <= v
    rows, cut = np.arange(len(s8))[:, None], levels.clamp(0, 255).cpu().numpy()
    euler = _euler_numbers(s8).cpu().numpy()[rows, cut]
    peaks_above, pits_below = above[rows, cut + 1], below[rows, cut]
    single = (peaks_above == 1) | ((pits_below == 0) & (euler == 1))
    holeless = (pits_below == 0) | (single & (euler == 1))
    return torch.from_numpy(single), torch.from_numpy(holeless)


def _cross_min(values: Tensor, fill: float) -> Tensor:
    """Minimum over the four 4-neighbours of each pixel of (B, 1, H, W) ``values``."""
    pad = F.pad(values, (1,) * 4, value=fill)
    up, down = pad[..., :-2, 1:-1], pad[..., 2:, 1:-1]
    left, right = pad[..., 1:-1, :-2], pad[..., 1:-1, 2:]
    return torch.minimum(torch.minimum(up, down), torch.minimum(left, right))


def _plateau_histogram(
    s8: np.ndarray, flags: Tensor, spoiled: Tensor, connectivity: int, interior: bool
) -> np.ndarray:
    """(B, 256) counts of the components of ``flags`` without a spoiled pixel, per image and level.

    The B maps are stacked into one tall image with an empty row between them, so one
    ``cv2.connectedComponents`` call labels the whole batch. With ``interior``, components
    touching the image border are left out.
    """
    num, height, width = s8.shape
    tall = np.zeros((num, height + 1, width), dtype=np.uint8)
    tall[:, :height] = flags.cpu().numpy()
    count, labels = cv2.connectedComponents(tall.reshape(-1, width), connectivity=connectivity)
    labels = labels.reshape(num, height + 1, width)[:, :height]
    keep = np.ones(count, dtype=bool)
    keep[0] = False
    keep[labels[spoiled.cpu().numpy()]] = False
    if interior:
        edges = [labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
        keep[np.concatenate([e.ravel() for e in edges])] = False
    flat = labels.ravel()
    where = np.flatnonzero(keep[flat])
    first = np.zeros(count, dtype=np.int64)
    first[flat[where]] = where  # one pixel of each kept component
    chosen = first[np.flatnonzero(keep)]
    hist = np.zeros((num, 256), dtype=np.int64)
    np.add.at(hist, (chosen // (height * width), s8.ravel()[chosen]), 1)
    return hist


def _euler_numbers(s8: Tensor) -> Tensor:
    """(B, 256) Euler number (8-connected foreground) of ``s8 > t`` for every level t.

    Gray's bit quads: a 2x2 quad with n foreground pixels adds +1 (n = 1), -1 (n = 3) or -2 (two
    diagonal pixels) to 4E. With indicators [t < max], [t < min] and n(t) of each quad this is
    2 [t < max] + 2 [t < min] - n(t) - 2 [diagonal pair], and sum n(t) = 4 #(pixels > t).
    """
    pad = F.pad(s8.int(), (1,) * 4, value=-1) + 1  # index 0 is level -1
    a, b, c, d = pad[:, :-1, :-1], pad[:, :-1, 1:], pad[:, 1:, :-1], pad[:, 1:, 1:]
    high = torch.maximum(torch.maximum(a, b), torch.maximum(c, d))
    low = torch.minimum(torch.minimum(a, b), torch.minimum(c, d))
    counts = 2 * _count_above(high) + 2 * _count_above(low) - 4 * _count_above(pad)
    for first, second in (((a, d), (b, c)), ((b, c), (a, d))):  # only `first` set: [lo, hi)
        lo, hi = torch.maximum(*second), torch.minimum(*first)
        counts -= 2 * (_count_above(hi) - _count_above(torch.minimum(lo, hi)))
    return counts[:, 2:258] // 4


def _count_above(index: Tensor) -> Tensor:
    """(B, 258) with entry i = number of elements of (B, ...) int ``index`` that are >= i."""
    offsets = torch.arange(len(index), device=index.device)[:, None] * 258
    hist = torch.bincount((index.flatten(1) + offsets).flatten(), minlength=len(index) * 258)
    return hist.view(len(index), 258).flip(1).cumsum(1).flip(1)


def max_box_ious(
    s8: Tensor,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    multi_contour: bool,
    inclusive: bool = True,
    topology: bool | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Best IoU with any GT box of the box(es) estimated at every CAM threshold.

    Args:
        s8: (B, H, W) uint8 score maps (``scoremaps_to_uint8``) on any device.
        gt_boxes: B arrays (n_i, 4) of (x0, y0, x1, y1) inclusive GT boxes in map pixels.
        thresholds: (T,) CAM thresholds in [0, 1).
        multi_contour: All contours (MaxBoxAccV2) instead of the largest (MaxBoxAcc).
        inclusive: Inclusive-pixel IoU ([WSOL]); False for the thesis author's variant.
        topology: Run the single-component/hole-free test (pays off where the per-pixel passes
            are cheap, i.e. on a GPU); ``None`` runs it when ``s8`` is on a CUDA device. Without
            it, only empty foregrounds skip ``cv2.findContours``. Results are identical.
        workers: Threads sharing the ``cv2.findContours`` calls.

    Returns:
        (B, T) float64 IoUs.
    """
    return max_box_ious_per_rule(
        s8, gt_boxes, thresholds, (multi_contour,), inclusive, topology, workers
    )[0]


def max_box_ious_per_rule(
    s8: Tensor,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    rules: tuple[bool, ...] = (False, True),
    inclusive: bool = True,
    topology: bool | None = None,
    workers: int = 1,
) -> list[np.ndarray]:
    """``max_box_ious`` for several contour rules (``multi_contour`` values) from one contour pass.

    MaxBoxAcc and MaxBoxAccV2 of the same maps need the same ``cv2.findContours`` calls; this
    makes them once. Arguments as ``max_box_ious``; returns one (B, T) array per rule.
    """
    levels = _integer_levels(s8, thresholds)  # (B, T)
    boxes, nonempty, extent = _foreground_boxes(s8, levels)
    simple = torch.stack([~nonempty.cpu()] * len(rules))  # (R, B, T): no contour pass needed
    if topology or (topology is None and s8.is_cuda):
        single, holeless = _topology(s8, levels)
        for r, multi in enumerate(rules):
            simple[r] |= single & (holeless | (not multi))
    gt = _pad_boxes(gt_boxes)  # (B, G, 4)
    ious = box_iou(boxes.cpu().numpy()[:, :, None, :], gt[:, None], inclusive)[..., 0, :].max(-1)
    ious = [ious.copy() for _ in rules]
    pairs = torch.nonzero(~simple.all(0)).tolist()
    if not pairs:
        return ious
    chunks = [pairs[i :: max(workers, 1)] for i in range(max(workers, 1))]
    job = (s8.cpu().numpy(), levels.cpu().tolist(), extent.cpu().tolist(), gt_boxes, inclusive)
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        found = np.concatenate(list(pool.map(lambda c: _contour_ious(*job, c, rules), chunks)))
    rows, cols = np.array([pair for chunk in chunks for pair in chunk]).T
    for r, multi in enumerate(rules):
        todo = ~simple[r][rows, cols].numpy()
        ious[r][rows[todo], cols[todo]] = found[todo, int(multi)]
    return ious


def _contour_ious(pixels, cut, extent, gt_boxes, inclusive, pairs, rules) -> np.ndarray:
    """(P, 2) best IoU of the largest contour's box and of any contour's box for each pair.

    Runs ``cv2.findContours`` on the foreground of each (image, threshold) pair, cropped to its
    extent plus a one-pixel empty frame, with the contour points shifted back to map pixels.
    Only the columns that ``rules`` ask for are filled (the other stays 0).
    """
    height, width = pixels.shape[-2:]
    gt_lists = [np.asarray(g).reshape(-1, 4).tolist() for g in gt_boxes]
    out = np.zeros((len(pairs), 2))
    for i, (b, k) in enumerate(pairs):
        x0, y0, x1, y1 = extent[b][k]
        mask = np.zeros((y1 - y0 + 3, x1 - x0 + 3), dtype=bool)  # numpy: cv2 would copy the crop
        np.greater(pixels[b, y0 : y1 + 1, x0 : x1 + 1], cut[b][k], out=mask[1:-1, 1:-1])
        offset = (x0 - 1, y0 - 1)
        contours = cv2.findContours(
            mask.view(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset
        )[-2]
        largest = max(contours, key=cv2.contourArea) if not all(rules) else None
        for contour in contours if any(rules) else [largest]:
            x, y, w, h = cv2.boundingRect(contour)
            box = (x, y, min(x + w, width - 1), min(y + h, height - 1))
            iou = max(_scalar_iou(box, g, inclusive) for g in gt_lists[b])
            out[i, 1] = max(out[i, 1], iou)
            if contour is largest:
                out[i, 0] = iou
    return out


def _scalar_iou(a, b, inclusive: bool) -> float:
    """IoU of two (x0, y0, x1, y1) boxes given as Python numbers (the per-contour hot loop)."""
    one = 1 if inclusive else 0
    inter = max(min(a[2], b[2]) - max(a[0], b[0]) + one, 0) * max(
        min(a[3], b[3]) - max(a[1], b[1]) + one, 0
    )
    union = (
        (a[2] - a[0] + one) * (a[3] - a[1] + one)
        + (b[2] - b[0] + one) * (b[3] - b[1] + one)
        - inter
    )
    return inter / union if union > 0 else 0.0


def _pad_boxes(gt_boxes: list[np.ndarray]) -> np.ndarray:
    """Stack ragged (n_i, 4) GT boxes into (B, G, 4), padding with each image's first box."""
    arrays = [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in gt_boxes]
    if any(len(a) == 0 for a in arrays):
        raise ValueError("every image needs at least one ground-truth box")
    most = max(len(a) for a in arrays)
    return np.stack([np.concatenate([a, np.repeat(a[:1], most - len(a), 0)]) for a in arrays])
