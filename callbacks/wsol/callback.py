"""Log the WSOL localization metrics of any module that returns CAMs from val/test steps.

Consumes the step outputs (``callbacks.keys``): ``CAMS`` (B, h, w) raw CAMs of the GT class, and
``BOXES`` (B, G, 4) and/or ``MASKS`` (B, H, W); with ``top_k_loc`` also ``LOGITS`` (B, C) and
``LABEL`` (B,) for GT-known / Top-1 / Top-5 localization. MaxBoxAcc, MaxBoxAccV2 and Top-k Loc
share one normalization and one box analysis per batch (``callbacks.wsol.metrics.WSOLMetrics``).
Keys (``{stage}/{name}``): ``maxboxacc`` (largest contour, IoU 0.5) and its best CAM threshold
``maxboxacc_threshold``, ``maxboxacc_v2`` (all contours, mean of IoU 0.3/0.5/0.7) with
``maxboxacc_v2@30|50|70``, ``pxap``, ``gt_known_loc``, ``top1_loc``, ``top5_loc`` and
``loc_threshold``. The metric states are sums, so the numbers are exact under DDP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning import LightningModule, Trainer

from callbacks.base import EvaluationCallback, declared_outputs
from callbacks.global_log import log_global
from callbacks.keys import BOXES, CAMS, LABEL, LOGITS, MASKS
from callbacks.wsol.boxes import Method
from callbacks.wsol.metrics import Variant, WSOLMetrics


class LogWSOLMetrics(EvaluationCallback):
    """MaxBoxAcc, MaxBoxAccV2, PxAP and Top-k Loc at the end of every val/test epoch.

    The module must return ``CAMS`` and at least one of ``BOXES`` / ``MASKS`` (box metrics from
    boxes, PxAP from masks), and ``LOGITS`` + ``LABEL`` when ``top_k_loc``; a module that lists
    ``evaluation_outputs`` without them fails at setup, naming the missing keys.

    Args:
        image_size: Side at which CAMs are scored (224 in [WSOL]); GT boxes/masks must be at it.
        cam_curve_interval: Step of the CAM threshold grid (0.01: 100 thresholds).
        top_k_loc: Also compute GT-known / Top-1 / Top-5 Loc (needs ``LOGITS`` and ``LABEL``).
        variant: ``wsol`` (reference) or ``minmaxcam_official`` (the thesis author's IoU rule).
        workers: Threads sharing the box analysis of a batch (``None``: one per available CPU
            core, up to 8).
        stages: ``val`` and/or ``test`` (default both).
        every_n_epochs: Evaluate validation after every n-th epoch (and after the last one).
        box_method: Path of the box analysis: ``auto`` (per map, whichever pays),
            ``level_sets`` or ``cv2`` (the plain per-threshold path); the numbers are equal.
    """

    required_keys = (CAMS,)

    def __init__(
        self,
        image_size: int = 224,
        cam_curve_interval: float = 0.01,
        top_k_loc: bool = True,
        variant: Variant = "wsol",
        workers: int | None = None,
        stages: list[str] | None = None,
        every_n_epochs: int = 1,
        box_method: Method = "auto",
    ) -> None:
        super().__init__(stages, every_n_epochs)
        self.box_method = box_method
        if top_k_loc:
            self.required_keys = (CAMS, LOGITS, LABEL)
        self.image_size, self.cam_curve_interval = image_size, cam_curve_interval
        self.top_k_loc, self.variant, self.workers = top_k_loc, variant, workers
        WSOLMetrics(**self._metric_args())  # checks the arguments now, not at the first epoch
        self.last: dict[str, float] = {}  # the values logged at the latest report

    def _metric_args(self) -> dict[str, Any]:
        return {
            "image_size": (self.image_size, self.image_size),
            "cam_curve_interval": self.cam_curve_interval,
            "variant": self.variant,
            "workers": self.workers,
            "box_method": self.box_method,
        }

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        declared = declared_outputs(pl_module)
        if declared is not None and not declared & {BOXES, MASKS}:
            raise ValueError(
                f"LogWSOLMetrics needs the step output {BOXES!r} or {MASKS!r} (callbacks/keys.py), "
                f"but {type(pl_module).__name__}.evaluation_outputs lists only {sorted(declared)}"
            )

    def make_metrics(self, stage: str) -> WSOLMetrics:
        return WSOLMetrics(**self._metric_args())

    def update(
        self, metrics: WSOLMetrics, outputs: Mapping[str, Any], batch: Any, pl_module
    ) -> None:
        if BOXES not in outputs and MASKS not in outputs:
            raise ValueError(
                f"LogWSOLMetrics needs the step output {BOXES!r} or {MASKS!r} "
                f"(callbacks/keys.py), but the module returns {sorted(outputs)}"
            )
        labels = (outputs[LOGITS], outputs[LABEL]) if self.top_k_loc else (None, None)
        metrics.update(outputs[CAMS].detach(), outputs.get(BOXES), outputs.get(MASKS), *labels)

    def report(
        self, stage: str, metrics: WSOLMetrics, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        values = metrics.compute()  # summed over ranks: the same on every rank
        log_global(pl_module, {f"{stage}/{name}": value for name, value in values.items()})
        self.last = {f"{stage}/{name}": value for name, value in values.items()}
