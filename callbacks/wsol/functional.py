"""Pure-tensor math of the WSOL localization metrics (MaxBoxAcc, MaxBoxAccV2, PxAP, Top-k Loc).

Definitions follow clovaai/wsolevaluation (Choe et al., CVPR 2020), ``evaluation.py``: thresholds
``np.arange(0, 1, interval)``; CAMs resized bicubically and min-max normalized; a hit when the
best box IoU reaches ``delta / 100``; the best threshold per IoU level; PxAP from score
histograms. The box extraction itself (``uint8`` cut, ``cv2.findContours``, largest or all
contours) is in ``callbacks/wsol/boxes.py``. No code was copied from that repository.

In the torchmetrics shape, each metric has one ``_<metric>_update`` (a batch -> its additive
state) and one ``_<metric>_compute`` (the summed states -> the value); the ``Metric`` classes of
``callbacks/wsol/metrics.py`` only add the states up. ``normalize_cams`` scales maps with the
suite's one min-max normalization (``lightning_modules/components/cams.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.wsol.boxes import Method, max_box_ious, max_box_ious_per_rule
from lightning_modules.components.cams import minmax_normalize


def cam_thresholds(interval: float = 0.01) -> np.ndarray:
    """The CAM threshold grid ``np.arange(0, 1, interval)`` (100 values for 0.01)."""
    if not 0 < interval < 1:
        raise ValueError(f"`interval` must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


def normalize_cams(
    cams: Tensor, size: tuple[int, int] | None = (224, 224), mode: str = "bicubic"
) -> Tensor:
    """Resize CAMs to ``size`` on their device, then min-max normalize each to [0, 1].

    The resize is torch's ``interpolate`` (``align_corners=False``) written as two matrix
    products, rows then columns: the same weights, a few times faster than the 2-D kernel.

    Args:
        cams: (B, h, w) class activation maps at feature resolution (any float dtype).
        size: Output (H, W); ``None`` keeps the input size.
        mode: ``bicubic`` ([WSOL], cv2 ``INTER_CUBIC``) or ``bilinear`` (the thesis author's code).

    Returns:
        (B, H, W) float64 maps in [0, 1]; a constant CAM (before resizing, which would leave
        rounding ripples of ~1e-16 to be stretched to [0, 1]) or one with a NaN becomes all zeros.
    """
    maps = cams.detach().double()
    low, high = torch.aminmax(maps.flatten(1), dim=1)
    constant = ~(high > low)
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        rows = _resize_matrix(maps.shape[-2], size[0], mode, maps)
        cols = _resize_matrix(maps.shape[-1], size[1], mode, maps)
        maps = rows @ maps @ cols.T
    low, high = torch.aminmax(maps.flatten(1), dim=1)  # NaN anywhere makes both NaN
    valid = (high > low) & ~constant
    # rounding is monotonic, so low <= x <= high gives 0 <= (x - low) / (high - low) <= 1 exactly
    maps = minmax_normalize(maps)
    maps[~valid] = 0.0
    return maps


@functools.lru_cache(maxsize=16)
def resize_taps(size_in: int, size_out: int, mode: str = "bicubic") -> tuple[np.ndarray, ...]:
    """The non-zero entries of each row of ``_resize_matrix``: (size_out, k) sources and weights.

    Sources ascend along each row (padded with weight 0); equal sizes give the identity, as
    ``normalize_cams`` leaves such maps unresized.
    """
    if size_in == size_out:
        return np.arange(size_out)[:, None], np.ones((size_out, 1))
    matrix = _resize_matrix(size_in, size_out, mode, torch.empty(0, dtype=torch.float64)).numpy()
    taps = max(1, int((matrix != 0).sum(1).max()))
    sources = np.zeros((size_out, taps), dtype=np.int64)
    weights = np.zeros((size_out, taps))
    for row, values in enumerate(matrix):
        (nonzero,) = np.nonzero(values)
        sources[row, : len(nonzero)], weights[row, : len(nonzero)] = nonzero, values[nonzero]
    sources.setflags(write=False)
    weights.setflags(write=False)
    return sources, weights


@functools.lru_cache(maxsize=16)
def resize_bands(size_in: int, size_out: int, mode: str = "bicubic") -> tuple[np.ndarray, ...]:
    """The columns of ``_resize_matrix`` as bands: first output (size_in,) and weights (size_in, n).

    Source j reaches outputs ``first[j] .. first[j] + n - 1`` (padded with weight 0 and kept
    inside the output); equal sizes give the identity.
    """
    if size_in == size_out:
        return np.arange(size_out), np.ones((size_out, 1))
    matrix = _resize_matrix(size_in, size_out, mode, torch.empty(0, dtype=torch.float64)).numpy()
    reach = [np.flatnonzero(column) for column in matrix.T]
    width = max(int(r[-1] - r[0] + 1) for r in reach if len(r))
    first = np.array([min(r[0], size_out - width) if len(r) else 0 for r in reach])
    weights = np.stack([matrix[f : f + width, j] for j, f in enumerate(first)])
    first.setflags(write=False)
    weights.setflags(write=False)
    return first, weights


def _resize_matrix(size_in: int, size_out: int, mode: str, like: Tensor) -> Tensor:
    """(size_out, size_in) matrix of torch's 1-D ``mode`` resize (``align_corners=False``)."""
    eye = torch.eye(size_in, dtype=like.dtype, device=like.device)[:, None, :, None]
    return F.interpolate(eye, size=(size_out, 1), mode=mode, align_corners=False)[:, 0, :, 0].T


def as_box_arrays(boxes: Tensor | Sequence[Tensor], num: int) -> list[np.ndarray]:
    """(B, 4), (B, G, 4) or a list of (n_i, 4) boxes -> list of int64 numpy arrays."""
    if isinstance(boxes, Tensor):  # one conversion for the batch, then views of it
        stacked = boxes.detach().cpu().long()
        items = list(stacked.numpy() if boxes.dim() == 3 else stacked[:, None].numpy())
    else:
        items = [
            b if isinstance(b, np.ndarray) else torch.as_tensor(b).detach().cpu() for b in boxes
        ]
    if len(items) != num:
        raise ValueError(f"got {len(items)} box sets for {num} CAMs")
    return [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in items]


def cam_box_ious(
    cams: Tensor,
    boxes: Tensor | Sequence[Tensor],
    image_size: tuple[int, int] | None,
    thresholds: np.ndarray,
    multi_contour: tuple[bool, ...],
    inclusive: bool = True,
    workers: int | None = None,
    box_method: Method = "auto",
) -> list[np.ndarray]:
    """Best box IoUs (B, T) of raw CAMs for each value of the contour rule ``multi_contour``.

    Resizes and normalizes the CAMs (on their device when it is a GPU, else in the threads of
    the box analysis), cuts them as [WSOL] and runs one box analysis for all rule values. Every
    ``Metric`` of ``callbacks/wsol/metrics.py`` gets its boxes here: the one place that calls
    the box analysis of raw CAMs. ``box_method`` picks the path (``boxes.max_box_ious``):
    ``auto`` (per map, what pays), ``level_sets`` or ``cv2`` (the plain per-threshold path);
    the results are the same.
    """
    boxes = as_box_arrays(boxes, len(cams))
    options = {"inclusive": inclusive, "workers": workers, "method": box_method}
    if cams.is_cuda:
        maps = normalize_cams(cams, image_size)
        return max_box_ious_per_rule(maps, boxes, thresholds, multi_contour, **options)
    height, width = image_size if image_size is not None else cams.shape[-2:]
    taps = resize_taps(cams.shape[-2], height) + resize_bands(cams.shape[-1], width)
    return max_box_ious_per_rule(cams, boxes, thresholds, multi_contour, taps=taps, **options)


def iou_hits(ious: np.ndarray, iou_thresholds: tuple[float, ...], official: bool = False) -> Tensor:
    """(B, D, T) bool from (B, T) best IoUs: ``IoU >= delta / 100`` (``>`` when ``official``)."""
    deltas = np.asarray([d / 100 for d in iou_thresholds])[None, :, None]
    hits = ious[:, None] > deltas if official else ious[:, None] >= deltas
    return torch.from_numpy(hits)


def _max_box_accuracy_update(
    ious: np.ndarray, iou_thresholds: tuple[float, ...], official: bool = False
) -> Tensor:
    """(D, T) int64 counts of a batch's images localized at each IoU level and CAM threshold."""
    return iou_hits(ious, iou_thresholds, official).sum(0)


def _max_box_accuracy_compute(hits: Tensor, total: Tensor | int) -> Tensor:
    """(D,) MaxBoxAcc in percent at each IoU level, each at its own best CAM threshold."""
    return 100.0 * hits.double().amax(-1) / torch.as_tensor(total).double().clamp_min(1)


def max_box_accuracy(
    cams: Tensor,
    gt_boxes: list[np.ndarray],
    iou_thresholds: tuple[float, ...] = (50,),
    multi_contour: bool = False,
    interval: float = 0.01,
    box_method: Method = "auto",
) -> Tensor:
    """MaxBoxAcc (percent) averaged over ``iou_thresholds`` of normalized (B, H, W) maps in [0, 1].

    MaxBoxAcc is ``iou_thresholds=(50,)``; MaxBoxAccV2 is ``(30, 50, 70)`` with ``multi_contour``.
    """
    thresholds = cam_thresholds(interval)
    ious = max_box_ious(cams, gt_boxes, thresholds, multi_contour, method=box_method)
    hits = _max_box_accuracy_update(ious, iou_thresholds)
    return _max_box_accuracy_compute(hits, len(cams)).mean()


def _localization_accuracy_update(
    ious: np.ndarray,
    logits: Tensor,
    labels: Tensor,
    top_k: tuple[int, ...],
    iou_threshold: float,
) -> Tensor:
    """(1 + K, T) counts per CAM threshold: GT-known hits, then hits whose class is in the top k.

    ``ious`` (B, T) are the largest-contour box IoUs; ``labels`` (B,) the GT class indices.
    """
    box_hit = iou_hits(ious, (iou_threshold,))[:, 0]
    scores = logits.detach()
    ranks = (scores > scores.gather(1, labels[:, None])).sum(1).cpu()
    rows = [box_hit] + [box_hit & (ranks < k)[:, None] for k in top_k]
    return torch.stack([r.sum(0) for r in rows])


def _localization_accuracy_compute(
    hits: Tensor,
    total: Tensor | int,
    thresholds: np.ndarray,
    top_k: tuple[int, ...],
    cam_threshold: float | None = None,
) -> dict[str, Tensor]:
    """``gt_known``, ``top{k}`` (percent) at ``cam_threshold`` (None: the best GT-known one).

    Also returns the ``threshold`` used.
    """
    if cam_threshold is None:
        index = int(hits[0].argmax())
    else:
        index = int(np.argmin(np.abs(thresholds - cam_threshold)))
    scale = 100.0 / torch.as_tensor(total).double().clamp_min(1)
    out = {"gt_known": hits[0, index].double() * scale}
    for row, k in enumerate(top_k, start=1):
        out[f"top{k}"] = hits[row, index].double() * scale
    out["threshold"] = torch.tensor(float(thresholds[index]), dtype=torch.float64)
    return out


def _pxap_update(cams: Tensor, masks: Tensor, thresholds: np.ndarray) -> tuple[Tensor, Tensor]:
    """Histograms of CAM scores at GT-positive (mask 1) and GT-negative (mask 0) pixels.

    ``cams`` are normalized (B, H, W) maps the size of ``masks``. Bin edges are the thresholds
    then 1, 2, 3 ([WSOL] ``MaskEvaluator``); other mask values (ignore regions) are left out.
    Runs on the maps' device.
    """
    if cams.shape != masks.shape:
        raise ValueError(f"CAMs {tuple(cams.shape)} and masks {tuple(masks.shape)} differ")
    masks = masks.to(cams.device)
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
