"""WSOL localization metrics torchmetrics lacks: MaxBoxAcc, MaxBoxAccV2, PxAP, Top-k Loc.

Definitions are those of clovaai/wsolevaluation (Choe et al., CVPR 2020); the math is in
``callbacks/wsol/functional.py`` (one ``_update`` / ``_compute`` pair per metric), and each
class here only adds a batch's counts to its states. Every state is an additive count with
``dist_reduce_fx="sum"``, so the metrics are exact under DDP and ``merge_state``. ``update``
takes raw CAMs (B, h, w) at any resolution: they are resized bicubically to ``image_size`` and
min-max normalized on their device, as [WSOL] ``inference.py``. ``WSOLMetrics`` holds all four
for one stage and gives MaxBoxAcc, MaxBoxAccV2 and Top-k Loc one box analysis per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from callbacks.wsol.boxes import Method
from callbacks.wsol.functional import (
    _localization_accuracy_compute,
    _localization_accuracy_update,
    _max_box_accuracy_compute,
    _max_box_accuracy_update,
    _pxap_compute,
    _pxap_update,
    cam_box_ious,
    cam_thresholds,
    normalize_cams,
)

Variant = Literal["wsol", "minmaxcam_official"]


def check_box_method(box_method: str) -> str:
    """``box_method``, refused at construction unless it is one of ``boxes.Method``."""
    if box_method not in get_args(Method):
        raise ValueError(f"unknown `box_method` {box_method!r}; choose from {get_args(Method)}")
    return box_method


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
        box_method: Path of the box analysis: ``auto`` (per map, whichever pays), ``level_sets``
            or ``cv2`` (the plain per-threshold ``cv2.findContours``); the results are equal.
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
        box_method: Method = "auto",
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
        self.box_method = check_box_method(box_method)
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
                cams,
                boxes,
                self.image_size,
                self.thresholds,
                rule,
                not official,
                self.workers,
                self.box_method,
            )[0]
        elif ious.shape != (len(cams), len(self.thresholds)):
            raise ValueError(f"`ious` must be (B, T) = {(len(cams), len(self.thresholds))}")
        hits = _max_box_accuracy_update(ious, self.iou_thresholds, official)
        self.hits += hits.to(self.hits.device)
        self.total += len(cams)

    def per_iou(self) -> Tensor:
        """(D,) MaxBoxAcc in percent at each IoU level (each with its own best threshold)."""
        return _max_box_accuracy_compute(self.hits, self.total)

    def best_thresholds(self) -> Tensor:
        """(D,) the CAM threshold that maximizes the accuracy at each IoU level."""
        return torch.as_tensor(self.thresholds)[self.hits.argmax(-1).cpu()]

    def compute(self) -> Tensor:
        """MaxBoxAcc in percent, averaged over the IoU levels."""
        return self.per_iou().mean()


class MaxBoxAccuracyV2(MaxBoxAccuracy):
    """MaxBoxAccV2 ([WSOL] ``box_v2_metric``): all contours, mean over IoU levels 30, 50 and 70.

    Takes the arguments of ``MaxBoxAccuracy``; only these two defaults differ.
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (30, 50, 70),
        multi_contour: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(iou_thresholds, multi_contour, **kwargs)


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
        pos, neg = _pxap_update(normalize_cams(cams, self.image_size), masks, self.thresholds)
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
    threshold that maximizes GT-known Loc (to be chosen on val).

    As input to ``update``: ``cams`` (B, h, w), ``boxes`` as in ``MaxBoxAccuracy``, ``logits``
    (B, C) class scores, ``labels`` (B,) GT class indices; optionally ``ious``, the (B, T)
    largest-contour IoUs of ``MaxBoxAccuracy`` (variant ``wsol``) of the same CAMs.
    ``box_method`` picks the path of the box analysis, as in ``MaxBoxAccuracy``.
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
        box_method: Method = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.box_method = check_box_method(box_method)
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
        labels: Tensor,
        ious: np.ndarray | None = None,
    ) -> None:
        """Count per threshold the GT-known hits and those whose class is also in the top k."""
        if ious is None:
            ious = cam_box_ious(
                cams, boxes, self.image_size, self.thresholds, (False,), box_method=self.box_method
            )[0]
        hits = _localization_accuracy_update(ious, logits, labels, self.top_k, self.iou_threshold)
        self.hits += hits.to(self.hits.device)
        self.total += len(cams)

    def compute(self) -> dict[str, Tensor]:
        """``gt_known``, ``top{k}`` accuracies (percent) and the ``threshold`` used."""
        return _localization_accuracy_compute(
            self.hits, self.total, self.thresholds, self.top_k, self.cam_threshold
        )


class WSOLMetrics(nn.Module):
    """MaxBoxAcc, MaxBoxAccV2, PxAP and Top-k Loc of one stage, as ``LogWSOLMetrics`` logs them.

    MaxBoxAcc, MaxBoxAccV2 and Top-k Loc share one normalization and one box analysis per batch
    (``cam_box_ious`` for both contour rules). Every batch must carry the same of ``boxes`` and
    ``masks``; ``compute`` reports the metrics of what was given.

    Args:
        image_size: (H, W) at which CAMs are scored; GT boxes / masks must be at it.
        cam_curve_interval: Step of the CAM threshold grid.
        variant: ``wsol`` or ``minmaxcam_official`` (``MaxBoxAccuracy``); Top-k Loc keeps the
            WSOL IoU rule in either.
        workers: Threads sharing the box analysis of a batch.
        box_method: ``auto``, ``level_sets`` or ``cv2``, as ``MaxBoxAccuracy``.
    """

    def __init__(
        self,
        image_size: tuple[int, int] = (224, 224),
        cam_curve_interval: float = 0.01,
        variant: Variant = "wsol",
        workers: int | None = None,
        box_method: Method = "auto",
    ) -> None:
        super().__init__()
        size = tuple(image_size)
        kwargs = {"cam_curve_interval": cam_curve_interval, "image_size": size}
        kwargs["box_method"] = box_method
        self.maxboxacc = MaxBoxAccuracy(variant=variant, **kwargs)
        self.maxboxacc_v2 = MaxBoxAccuracyV2(variant=variant, **kwargs)
        self.pxap = PixelAveragePrecision(cam_curve_interval=cam_curve_interval, image_size=size)
        self.loc = LocalizationAccuracy(**kwargs)
        self.image_size, self.variant, self.workers = size, variant, workers
        self.box_method = box_method
        self.given: frozenset[str] | None = None  # what the first batch carried
        self.seen: set[str] = set()

    def update(
        self,
        cams: Tensor,
        boxes: Tensor | Sequence[Tensor] | None = None,
        masks: Tensor | None = None,
        logits: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> None:
        """Add one batch: box metrics from ``boxes``, PxAP from ``masks``, Top-k Loc from
        ``boxes`` with ``logits`` (B, C) and class indices ``labels`` (B,)."""
        given = frozenset(k for k, v in (("boxes", boxes), ("masks", masks)) if v is not None)
        if not given:
            raise ValueError("WSOLMetrics.update needs `boxes` or `masks` with the CAMs")
        if self.given is None:
            self.given = given
        elif given != self.given:
            raise ValueError(
                f"a batch carries {sorted(given)} after batches with {sorted(self.given)}: "
                "every batch of a stage must carry the same of boxes / masks"
            )
        if boxes is not None:
            self.update_boxes(cams, boxes, logits, labels)
        if masks is not None:
            self.pxap.update(cams, masks)
            self.seen.add("masks")

    def update_boxes(
        self,
        cams: Tensor,
        boxes: Tensor | Sequence[Tensor],
        logits: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> None:
        """Update MaxBoxAcc, MaxBoxAccV2 and (given ``logits`` and ``labels``) Top-k Loc."""
        thresholds = self.maxboxacc.thresholds
        wsol = self.variant == "wsol"
        largest, every = cam_box_ious(
            cams,
            boxes,
            self.image_size,
            thresholds,
            (False, True),
            wsol,
            self.workers,
            self.box_method,
        )
        self.maxboxacc.update(cams, boxes, ious=largest)
        self.maxboxacc_v2.update(cams, boxes, ious=every)
        self.seen.add("boxes")
        if logits is not None and labels is not None:
            # Top-k Loc keeps the WSOL IoU rule in either variant
            self.loc.update(cams, boxes, logits, labels, ious=largest if wsol else None)
            self.seen.add("loc")

    def compute(self) -> dict[str, float]:
        """The values ``LogWSOLMetrics`` logs (keys without the stage prefix).

        ``maxboxacc``, ``maxboxacc_threshold`` (its best CAM threshold), ``maxboxacc_v2`` and
        ``maxboxacc_v2@30|50|70`` from boxes; ``gt_known_loc``, ``top1_loc``, ``top5_loc`` and
        ``loc_threshold`` from boxes with logits and labels; ``pxap`` from masks.
        """
        values: dict[str, float] = {}
        if "boxes" in self.seen:
            v1, v2 = self.maxboxacc, self.maxboxacc_v2
            # the per-level values and the threshold from the summed states too (under DDP)
            with v1.sync_context(), v2.sync_context():
                values["maxboxacc"] = float(v1.per_iou().mean())  # = v1.compute()
                values["maxboxacc_threshold"] = float(v1.best_thresholds()[0])
                per_iou = v2.per_iou()
                values["maxboxacc_v2"] = float(per_iou.mean())
                for delta, acc in zip(v2.iou_thresholds, per_iou.tolist(), strict=True):
                    values[f"maxboxacc_v2@{int(delta)}"] = acc
        if "loc" in self.seen:
            loc = self.loc.compute()
            values.update({f"{k}_loc": float(v) for k, v in loc.items() if k != "threshold"})
            values["loc_threshold"] = float(loc["threshold"])
        if "masks" in self.seen:
            values["pxap"] = float(self.pxap.compute())
        return values
