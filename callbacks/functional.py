"""Pure-tensor math of the WSOL localization metrics (MaxBoxAcc, MaxBoxAccV2, PxAP, Top-k Loc).

Definitions follow clovaai/wsolevaluation (Choe et al., CVPR 2020), ``evaluation.py``, as
recorded in ``shared/specs/minmaxcam.md``: thresholds ``np.arange(0, 1, interval)``; score map ->
``uint8(map * 255)``
(truncation); foreground ``s8 > int(tau * max(s8))``; ``cv2.findContours(RETR_TREE,
CHAIN_APPROX_SIMPLE)``; the largest contour by ``cv2.contourArea`` (MaxBoxAcc) or all contours
(V2); box ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``; inclusive-pixel IoU; a hit when
``IoU >= delta / 100``; the best threshold per IoU level. No code was copied from that repository.

Speed. The straightforward evaluation runs ``cv2.findContours`` 100 times per image. Here the 100
thresholds of a batch are handled at once: a threshold whose foreground provably is one 8-connected
component (at most one regional-maximum plateau above it) and, for the multi-contour variant, has no
hole (no interior 4-connected regional-minimum plateau at or below it) has exactly one contour, and
its box is the foreground's bounding box, read from row/column maxima for all thresholds together.
Only the remaining (image, threshold) pairs go through ``cv2.findContours``, on the cropped
foreground. Results equal the straightforward implementation exactly (tested).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def cam_thresholds(interval: float = 0.01) -> np.ndarray:
    """The CAM threshold grid ``np.arange(0, 1, interval)`` (100 values for 0.01)."""
    if not 0 < interval < 1:
        raise ValueError(f"`interval` must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


def normalize_cams(
    cams: Tensor, size: tuple[int, int] | None = (224, 224), mode: str = "bicubic"
) -> Tensor:
    """Resize CAMs to ``size`` on their device, then min-max normalize each to [0, 1].

    Args:
        cams: (B, h, w) class activation maps at feature resolution (any float dtype).
        size: Output (H, W); ``None`` keeps the input size.
        mode: ``bicubic`` ([WSOL], cv2 ``INTER_CUBIC``) or ``bilinear`` (the thesis author's code).

    Returns:
        (B, H, W) float64 maps in [0, 1]; a constant map or one with a NaN becomes all zeros.
    """
    maps = cams.detach().double()
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size=size, mode=mode, align_corners=False)[:, 0]
    flat = maps.flatten(1)
    low, high = flat.amin(1), flat.amax(1)
    valid = (high > low) & ~torch.isnan(flat).any(1)
    scale = torch.where(valid, high - low, torch.ones_like(high))
    out = (maps - low[:, None, None]) / scale[:, None, None]
    return torch.where(valid[:, None, None], out, torch.zeros_like(out)).clamp_(0, 1)


def scoremaps_to_uint8(maps: Tensor) -> Tensor:
    """``uint8(map * 255)`` with truncation, as the reference, on the maps' device.

    Raises ``ValueError`` on NaN or on values outside [0, 1].
    """
    maps = torch.as_tensor(maps).detach().double()
    if torch.isnan(maps).any():
        raise ValueError("score map contains NaN")
    if maps.numel() and (maps.min() < 0 or maps.max() > 1):
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

    Returns:
        (B, T) float64 IoUs.
    """
    levels = _integer_levels(s8, thresholds)  # (B, T)
    boxes, nonempty, extent = _foreground_boxes(s8, levels)
    simple = ~nonempty.cpu()
    if topology or (topology is None and s8.is_cuda):
        single, holeless = _topology(s8, levels)
        simple |= single & (holeless | (not multi_contour))
    gt = _pad_boxes(gt_boxes)  # (B, G, 4)
    ious = box_iou(boxes.cpu().numpy()[:, :, None, :], gt[:, None], inclusive)[..., 0, :].max(-1)
    pairs = torch.nonzero(~simple).tolist()
    if pairs:
        rows, cols = zip(*pairs, strict=True)
        ious[list(rows), list(cols)] = _contour_ious(
            s8, levels, extent, gt_boxes, pairs, multi_contour, inclusive
        )
    return ious


def _contour_ious(s8, levels, extent, gt_boxes, pairs, multi_contour, inclusive) -> list[float]:
    """Best IoU of the cv2 contour boxes for the (image, threshold) ``pairs``, on cropped masks."""
    height, width = s8.shape[-2:]
    pixels, extent, cut = s8.cpu().numpy(), extent.cpu().tolist(), levels.cpu().tolist()
    gt_lists = [np.asarray(g).reshape(-1, 4).tolist() for g in gt_boxes]
    out = []
    for b, k in pairs:
        x0, y0, x1, y1 = extent[b][k]
        crop = pixels[b, y0 : y1 + 1, x0 : x1 + 1]
        crop = cv2.threshold(crop, cut[b][k], 255, cv2.THRESH_BINARY)[1]
        mask = cv2.copyMakeBorder(crop, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        offset = (x0 - 1, y0 - 1)
        contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset)[-2]
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        best = 0.0
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            box = (x, y, min(x + w, width - 1), min(y + h, height - 1))
            for g in gt_lists[b]:
                best = max(best, _scalar_iou(box, g, inclusive))
        out.append(best)
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


def _box_hits(
    cams: Tensor,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    iou_thresholds: tuple[float, ...],
    multi_contour: bool,
    official: bool = False,
) -> Tensor:
    """(B, D, T) bool: the best IoU of image b at threshold t reaches IoU level d.

    ``official`` is the thesis author's variant: strict ``IoU > delta`` without the +1 pixel.
    """
    ious = max_box_ious(scoremaps_to_uint8(cams), gt_boxes, thresholds, multi_contour, not official)
    deltas = np.asarray([d / 100 for d in iou_thresholds])[None, :, None]
    hits = ious[:, None] > deltas if official else ious[:, None] >= deltas
    return torch.from_numpy(hits)


def _box_accuracy_update(
    cams: Tensor,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    iou_thresholds: tuple[float, ...],
    multi_contour: bool,
    official: bool = False,
) -> Tensor:
    """(D, T) int64 hit counts: images whose best IoU at threshold t reaches IoU level d."""
    hits = _box_hits(cams, gt_boxes, thresholds, iou_thresholds, multi_contour, official)
    return hits.sum(0).long()


def max_box_accuracy(
    cams: Tensor,
    gt_boxes: list[np.ndarray],
    iou_thresholds: tuple[float, ...] = (50,),
    multi_contour: bool = False,
    interval: float = 0.01,
) -> Tensor:
    """MaxBoxAcc (percent) averaged over ``iou_thresholds`` of normalized (B, H, W) maps in [0, 1].

    MaxBoxAcc is ``iou_thresholds=(50,)``; MaxBoxAccV2 is ``(30, 50, 70)`` with ``multi_contour``.
    """
    hits = _box_accuracy_update(
        cams, gt_boxes, cam_thresholds(interval), iou_thresholds, multi_contour
    )
    return (100.0 * hits.double().amax(-1) / len(cams)).mean()


def _pxap_update(cams: Tensor, masks: Tensor, thresholds: np.ndarray) -> tuple[Tensor, Tensor]:
    """Histograms of CAM scores at GT-positive (mask 1) and GT-negative (mask 0) pixels.

    Bin edges are the thresholds then 1, 2, 3 ([WSOL] ``MaskEvaluator``); other mask values
    (ignore regions) are left out. Runs on the maps' device.
    """
    edges = torch.as_tensor(np.append(thresholds, [1.0, 2.0, 3.0]), device=cams.device)
    scores = cams.detach().double()
    bins = (torch.bucketize(scores, edges, right=True) - 1).clamp_(0, len(edges) - 2)
    num_bins = len(edges) - 1
    pos = torch.bincount(bins[masks == 1], minlength=num_bins)
    neg = torch.bincount(bins[masks == 0], minlength=num_bins)
    return pos.to(torch.int64), neg.to(torch.int64)


def _pxap_compute(pos_hist: Tensor, neg_hist: Tensor) -> Tensor:
    """PxAP in percent: area under the pixel PR curve, bins without predictions skipped."""
    tp = pos_hist.flip(0).cumsum(0).double()
    fp = neg_hist.flip(0).cumsum(0).double()
    if tp[-1] <= 0:
        raise ValueError("PxAP: no positive ground-truth pixel was seen")
    predicted = tp + fp
    precision = tp / predicted.clamp_min(1)
    recall = tp / tp[-1]
    terms = precision[1:] * torch.diff(recall)
    return 100.0 * terms[predicted[1:] > 0].sum()


def pixel_average_precision(cams: Tensor, masks: Tensor, interval: float = 0.01) -> Tensor:
    """PxAP (percent) of (B, H, W) maps in [0, 1]; masks: 1 object, 0 background, else ignored."""
    return _pxap_compute(*_pxap_update(cams, masks, cam_thresholds(interval)))
