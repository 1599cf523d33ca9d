"""WSOL localization metrics torchmetrics lacks: MaxBoxAcc, MaxBoxAccV2, PxAP, Top-k Loc.

Definitions are those of clovaai/wsolevaluation (Choe et al., CVPR 2020), recorded in
``shared/specs/minmaxcam.md``; the math is in ``callbacks/wsol/functional.py``. Every state is an
additive count with ``dist_reduce_fx="sum"``, so the metrics are exact under DDP and
``merge_state``. ``update`` takes raw CAMs (B, h, w) at any resolution: they are resized
bicubically to ``image_size`` and min-max normalized on their device, as [WSOL] ``inference.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from callbacks.wsol.boxes import max_box_ious_per_rule
from callbacks.wsol.functional import (
    _pxap_compute,
    _pxap_update,
    cam_thresholds,
    iou_hits,
    normalize_cams,
    resize_bands,
    resize_taps,
)

Variant = Literal["wsol", "minmaxcam_official"]


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
    rules: tuple[bool, ...],
    inclusive: bool = True,
    workers: int | None = None,
) -> list[np.ndarray]:
    """Best box IoUs (B, T) of raw CAMs for each contour rule (``multi_contour`` value).

    Resizes and normalizes the CAMs (on their device when it is a GPU, else in the threads of
    the box analysis), cuts them as [WSOL] and runs one box analysis for all ``rules``.
    """
    boxes = as_box_arrays(boxes, len(cams))
    if cams.is_cuda:
        maps = normalize_cams(cams, image_size)
        return max_box_ious_per_rule(maps, boxes, thresholds, rules, inclusive, workers)
    height, width = image_size if image_size is not None else cams.shape[-2:]
    taps = resize_taps(cams.shape[-2], height) + resize_bands(cams.shape[-1], width)
    return max_box_ious_per_rule(cams, boxes, thresholds, rules, inclusive, workers, taps)


class MaxBoxAccuracy(Metric):
    """MaxBoxAcc: the best-threshold box accuracy of CAMs (percent), averaged over IoU levels.

    For each IoU level delta, the CAM threshold tau (``np.arange(0, 1, interval)``) is chosen
    independently: MaxBoxAcc(delta) = max_tau 100 * #(best IoU at tau >= delta / 100) / #images.
    The default is the CVPR metric (largest contour, delta = 50); ``MaxBoxAccuracyV2`` averages
    deltas 30/50/70 over all contours.

    As input to ``update``: ``cams`` (B, h, w) float, raw CAMs of the GT class; ``boxes`` (B, 4),
    (B, G, 4) or a list of (n_i, 4) inclusive (x0, y0, x1, y1) GT boxes in ``image_size`` pixels;
    optionally ``ious`` (B, T), the best IoUs of these CAMs already computed under this metric's
    rule (``cam_box_ious``), so that metrics can share one pass.

    Args:
        iou_thresholds: IoU levels delta in percent.
        multi_contour: Boxes of all contours (V2) instead of the largest one.
        cam_curve_interval: Step of the CAM threshold grid (0.01 gives 100 thresholds).
        image_size: (H, W) at which boxes are scored; ``None`` scores CAMs at their own size.
        variant: ``wsol`` (reference) or ``minmaxcam_official`` (the thesis author's code: strict
            ``IoU > delta`` without the +1 pixel; resize CAMs to the original size yourself).
        workers: Threads sharing the images of a batch (``None``: one per available CPU core,
            up to 8).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (50,),
        multi_contour: bool = False,
        cam_curve_interval: float = 0.01,
        image_size: tuple[int, int] | None = (224, 224),
        variant: Variant = "wsol",
        workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not iou_thresholds or not all(0 < d <= 100 for d in iou_thresholds):
            raise ValueError(
                f"`iou_thresholds` must be percentages in (0, 100], got {iou_thresholds}"
            )
        if variant not in ("wsol", "minmaxcam_official"):
            raise ValueError(f"unknown `variant` {variant!r}")
        self.iou_thresholds = tuple(float(d) for d in iou_thresholds)
        self.multi_contour = multi_contour
        self.image_size = tuple(image_size) if image_size is not None else None
        self.variant = variant
        self.workers = workers
        self.thresholds = cam_thresholds(cam_curve_interval)
        shape = (len(self.iou_thresholds), len(self.thresholds))
        self.add_state("hits", torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, cams: Tensor, boxes: Tensor | Sequence[Tensor], ious: np.ndarray | None = None
    ) -> None:
        """Count, per IoU level and CAM threshold, the images localized correctly."""
        official = self.variant == "minmaxcam_official"
        if ious is None:
            rule = (self.multi_contour,)
            ious = cam_box_ious(
                cams, boxes, self.image_size, self.thresholds, rule, not official, self.workers
            )[0]
        elif ious.shape != (len(cams), len(self.thresholds)):
            raise ValueError(f"`ious` must be (B, T) = {(len(cams), len(self.thresholds))}")
        hits = iou_hits(ious, self.iou_thresholds, official).sum(0)
        self.hits += hits.to(self.hits.device)
        self.total += len(cams)

    def per_iou(self) -> Tensor:
        """(D,) MaxBoxAcc in percent at each IoU level (each with its own best threshold)."""
        return 100.0 * self.hits.double().amax(-1) / self.total.double().clamp_min(1)

    def best_thresholds(self) -> Tensor:
        """(D,) the CAM threshold that maximizes the accuracy at each IoU level."""
        return torch.as_tensor(self.thresholds)[self.hits.argmax(-1).cpu()]

    def compute(self) -> Tensor:
        """MaxBoxAcc in percent, averaged over the IoU levels."""
        return self.per_iou().mean()


class MaxBoxAccuracyV2(MaxBoxAccuracy):
    """MaxBoxAccV2 ([WSOL] ``box_v2_metric``): all contours, mean over IoU levels 30, 50 and 70."""

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (30, 50, 70),
        multi_contour: bool = True,
        cam_curve_interval: float = 0.01,
        image_size: tuple[int, int] | None = (224, 224),
        variant: Variant = "wsol",
        workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            iou_thresholds,
            multi_contour,
            cam_curve_interval,
            image_size,
            variant,
            workers,
            **kwargs,
        )


class PixelAveragePrecision(Metric):
    """PxAP ([WSOL] ``MaskEvaluator``): area under the pixel precision-recall curve (percent).

    As input to ``update``: ``cams`` (B, h, w) raw CAMs; ``masks`` (B, H, W) at ``image_size``
    with 1 = object, 0 = background and any other value (e.g. 255) = ignored.

    Args:
        cam_curve_interval: Bin width of the score histograms (bins up to 1, then [1, 2), [2, 3]).
        image_size: (H, W) of the masks; ``None`` scores CAMs at their own size.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        cam_curve_interval: float = 0.01,
        image_size: tuple[int, int] | None = (224, 224),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = cam_thresholds(cam_curve_interval)
        self.image_size = tuple(image_size) if image_size is not None else None
        num_bins = len(self.thresholds) + 2
        self.add_state("pos_hist", torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("neg_hist", torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, cams: Tensor, masks: Tensor) -> None:
        """Histogram the normalized CAM scores of object and background pixels."""
        maps = normalize_cams(cams, self.image_size)
        if maps.shape != masks.shape:
            raise ValueError(f"CAMs {tuple(maps.shape)} and masks {tuple(masks.shape)} differ")
        pos, neg = _pxap_update(maps, masks.to(maps.device), self.thresholds)
        self.pos_hist += pos.to(self.pos_hist.device)
        self.neg_hist += neg.to(self.neg_hist.device)

    def compute(self) -> Tensor:
        """PxAP in percent."""
        return _pxap_compute(self.pos_hist, self.neg_hist)


class LocalizationAccuracy(Metric):
    """GT-known Loc and Top-k Loc (Table 5.3) of the largest-contour CAM box at one threshold.

    An image is GT-known correct when IoU(box of the GT-class CAM, GT) >= delta / 100, and Top-k
    correct when, in addition, the GT class is among the classifier's top k. The counts are kept
    for every CAM threshold; ``compute`` reads them at ``cam_threshold`` or, when None, at the
    threshold that maximizes GT-known Loc (the spec's choice: tune it on val).

    As input to ``update``: ``cams`` (B, h, w), ``boxes`` as in ``MaxBoxAccuracy``, ``logits``
    (B, C) class scores, ``target`` (B,) GT class indices; optionally ``ious``, the (B, T)
    largest-contour IoUs of ``MaxBoxAccuracy`` (variant ``wsol``) of the same CAMs.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        top_k: Sequence[int] = (1, 5),
        iou_threshold: float = 50,
        cam_threshold: float | None = None,
        cam_curve_interval: float = 0.01,
        image_size: tuple[int, int] | None = (224, 224),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not top_k or min(top_k) < 1:
            raise ValueError(f"`top_k` must be positive integers, got {top_k}")
        self.top_k = tuple(int(k) for k in top_k)
        self.iou_threshold = float(iou_threshold)
        self.thresholds = cam_thresholds(cam_curve_interval)
        self.cam_threshold = cam_threshold
        self.image_size = tuple(image_size) if image_size is not None else None
        shape = (1 + len(self.top_k), len(self.thresholds))
        self.add_state("hits", torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        cams: Tensor,
        boxes: Tensor | Sequence[Tensor],
        logits: Tensor,
        target: Tensor,
        ious: np.ndarray | None = None,
    ) -> None:
        """Count per threshold the GT-known hits and those whose class is also in the top k."""
        if ious is None:
            ious = cam_box_ious(cams, boxes, self.image_size, self.thresholds, (False,))[0]
        box_hit = iou_hits(ious, (self.iou_threshold,))[:, 0]
        ranks = (logits.detach() > logits.detach().gather(1, target[:, None])).sum(1).cpu()
        rows = [box_hit] + [box_hit & (ranks < k)[:, None] for k in self.top_k]
        self.hits += torch.stack([r.sum(0) for r in rows]).to(self.hits.device)
        self.total += len(cams)

    def compute(self) -> dict[str, Tensor]:
        """``gt_known``, ``top{k}`` accuracies (percent) and the ``threshold`` used."""
        if self.cam_threshold is None:
            index = int(self.hits[0].argmax())
        else:
            index = int(np.argmin(np.abs(self.thresholds - self.cam_threshold)))
        scale = 100.0 / self.total.double().clamp_min(1)
        out = {"gt_known": self.hits[0, index].double() * scale}
        for row, k in enumerate(self.top_k, start=1):
            out[f"top{k}"] = self.hits[row, index].double() * scale
        out["threshold"] = torch.tensor(float(self.thresholds[index]), dtype=torch.float64)
        return out
