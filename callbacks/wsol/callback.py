"""Log the WSOL localization metrics of any module that returns CAMs from val/test steps.

Consumes the dict returned by ``validation_step`` / ``test_step``: ``cams`` (B, h, w) raw CAMs of
the GT class, and ``boxes`` (B, G, 4) and/or ``masks`` (B, H, W); with ``logits`` (B, C) and
``target`` (B,) it also logs GT-known / Top-1 / Top-5 localization. MaxBoxAcc, MaxBoxAccV2 and
Top-k Loc share one normalization and one box analysis per batch. Keys (``{stage}/{name}``):
``maxboxacc`` (largest contour, IoU 0.5), ``maxboxacc_v2`` (all contours, mean of IoU 0.3/0.5/0.7)
with ``maxboxacc_v2@30|50|70``, ``pxap``, ``gt_known_loc``, ``top1_loc``, ``top5_loc``. The metric
states are sums, so the numbers are exact under DDP.
"""

from __future__ import annotations

from typing import Any

from lightning import Callback, LightningModule, Trainer
from torch import Tensor, nn

from callbacks.wsol.metrics import (
    LocalizationAccuracy,
    MaxBoxAccuracy,
    MaxBoxAccuracyV2,
    PixelAveragePrecision,
    cam_box_ious,
)


class LogWSOLMetrics(Callback):
    """MaxBoxAcc, MaxBoxAccV2, PxAP and Top-k Loc at the end of every val/test epoch.

    Args:
        image_size: Side at which CAMs are scored (224 in [WSOL]); GT boxes/masks must be at it.
        cam_curve_interval: Step of the CAM threshold grid (0.01: 100 thresholds).
        top_k_loc: Also compute GT-known / Top-1 / Top-5 Loc (needs ``logits`` and ``target``).
        variant: ``wsol`` (reference) or ``minmaxcam_official`` (the thesis author's IoU rule).
        workers: Threads sharing the box analysis of a batch (``None``: one per available CPU
            core, up to 8).
    """

    def __init__(
        self,
        image_size: int = 224,
        cam_curve_interval: float = 0.01,
        top_k_loc: bool = True,
        variant: str = "wsol",
        workers: int | None = None,
    ) -> None:
        size = (image_size, image_size)
        kwargs = {"cam_curve_interval": cam_curve_interval, "image_size": size}
        self.metrics = nn.ModuleDict(
            {
                "maxboxacc": MaxBoxAccuracy(variant=variant, **kwargs),
                "maxboxacc_v2": MaxBoxAccuracyV2(variant=variant, **kwargs),
                "pxap": PixelAveragePrecision(**kwargs),
                "loc": LocalizationAccuracy(**kwargs),
            }
        )
        self.top_k_loc = top_k_loc
        self.size, self.variant, self.workers = size, variant, workers
        self.seen: set[str] = set()
        self.last: dict[str, float] = {}
        self.best_threshold: float | None = None  # MaxBoxAcc's best CAM threshold, last epoch

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if not trainer.sanity_checking:
            self._update(pl_module, outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._update(pl_module, outputs)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(pl_module, "test")

    def _update(self, pl_module: LightningModule, outputs: Any) -> None:
        if not isinstance(outputs, dict) or "cams" not in outputs:
            raise ValueError(
                "LogWSOLMetrics needs validation_step/test_step to return a dict with 'cams'"
            )
        self.metrics.to(pl_module.device)
        cams = outputs["cams"].detach()
        if "boxes" in outputs:
            labels = (outputs.get("logits"), outputs.get("target"))
            self.update_boxes(cams, outputs["boxes"], *(labels if self.top_k_loc else ()))
        if "masks" in outputs:
            self.metrics["pxap"].update(cams, outputs["masks"])
            self.seen.add("masks")

    def update_boxes(
        self, cams: Tensor, boxes: Any, logits: Tensor | None = None, target: Tensor | None = None
    ) -> None:
        """Update MaxBoxAcc, MaxBoxAccV2 and (given ``logits`` and ``target``) Top-k Loc.

        All three share one normalization and one box analysis (``cam_box_ious``).
        """
        thresholds = self.metrics["maxboxacc"].thresholds
        wsol = self.variant == "wsol"
        largest, every = cam_box_ious(
            cams, boxes, self.size, thresholds, (False, True), wsol, self.workers
        )
        self.metrics["maxboxacc"].update(cams, boxes, ious=largest)
        self.metrics["maxboxacc_v2"].update(cams, boxes, ious=every)
        self.seen.add("boxes")
        if logits is not None and target is not None:
            # Top-k Loc keeps the WSOL IoU rule in either variant
            self.metrics["loc"].update(cams, boxes, logits, target, ious=largest if wsol else None)
            self.seen.add("loc")

    def _log(self, pl_module: LightningModule, stage: str) -> None:
        values: dict[str, float] = {}
        if "boxes" in self.seen:
            values["maxboxacc"] = float(self.metrics["maxboxacc"].compute())
            self.best_threshold = float(self.metrics["maxboxacc"].best_thresholds()[0])
            v2 = self.metrics["maxboxacc_v2"]
            values["maxboxacc_v2"] = float(v2.compute())
            for delta, acc in zip(v2.iou_thresholds, v2.per_iou().tolist(), strict=True):
                values[f"maxboxacc_v2@{int(delta)}"] = acc
        if "loc" in self.seen:
            loc = self.metrics["loc"].compute()
            values.update({f"{k}_loc": float(v) for k, v in loc.items() if k != "threshold"})
            values["loc_threshold"] = float(loc["threshold"])
        if "masks" in self.seen:
            values["pxap"] = float(self.metrics["pxap"].compute())
        for name, value in values.items():
            pl_module.log(f"{stage}/{name}", value, sync_dist=False)
        self.last = {f"{stage}/{k}": v for k, v in values.items()}
        for metric in self.metrics.values():
            metric.reset()
        self.seen.clear()
