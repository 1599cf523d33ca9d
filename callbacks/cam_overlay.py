"""Overlay panel of CAMs: image, CAM heatmap, GT box (green) and the CAM box (red).

Works with any module whose val steps return ``CAMS``, ``BOXES`` and ``LABEL``
(``callbacks.keys``) on batches that carry the normalized ``image``. The red box is the
largest-contour box at ``cam_threshold``, by default at the best MaxBoxAcc threshold of the same
epoch, which ``callbacks.wsol.callback.LogWSOLMetrics`` logs as ``{stage}/maxboxacc_threshold``;
the panel is drawn at the end of the stage (``on_validation_end``), after every epoch-end hook
has logged, so the callbacks may come in any order. Logged as ``{stage}/cam_overlay`` through
``callbacks.panels.log_images``, on rank zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
from lightning import LightningModule, Trainer

from callbacks.base import EvaluationCallback, FirstBatch
from callbacks.keys import BOXES, CAMS, LABEL
from callbacks.panels import image_normalization, log_images
from callbacks.wsol.boxes import boxes_from_scoremap
from callbacks.wsol.functional import normalize_cams

#: The key (after ``{stage}/``) whose logged value is the default CAM threshold.
THRESHOLD_KEY = "maxboxacc_threshold"


def overlay_panel(image: torch.Tensor, cam: torch.Tensor, gt: torch.Tensor, box) -> torch.Tensor:
    """(3, H, W) panel: image blended with a jet heatmap of ``cam`` (H, W in [0, 1]), GT box green,
    estimated box red (inclusive pixel corners)."""
    heat = torch.from_numpy(matplotlib.colormaps["jet"](cam.cpu().numpy())[..., :3]).permute(
        2, 0, 1
    )
    panel = 0.5 * image.cpu() + 0.5 * heat.float()
    for (x0, y0, x1, y1), colour in (
        (gt.tolist(), (0.0, 1.0, 0.0)),
        (list(box), (1.0, 0.0, 0.0)),
    ):
        for c, value in enumerate(colour):
            panel[c, y0, x0 : x1 + 1] = panel[c, y1, x0 : x1 + 1] = value
            panel[c, y0 : y1 + 1, x0] = panel[c, y0 : y1 + 1, x1] = value
    return panel.clamp(0, 1)


class LogCAMOverlay(EvaluationCallback):
    """Log image | CAM overlay panels with GT (green) and estimated (red) boxes.

    Args:
        num_images: Panels per call (from the first batch of the stage).
        every_n_epochs: Draw after every n-th validation epoch (and after the last one).
        cam_threshold: Fixed CAM threshold in [0, 1); None reads ``{stage}/maxboxacc_threshold``
            from ``trainer.callback_metrics`` (logged by ``LogWSOLMetrics``) and fails when no
            callback logged it.
        mean: Per-channel mean the images were normalized with (to undo it); default:
            ``trainer.datamodule.image_mean``. Without either, setup fails.
        std: Per-channel std, as ``mean``.
        stages: ``val`` (default) and/or ``test``.
    """

    required_keys = (CAMS, BOXES, LABEL)

    def __init__(
        self,
        num_images: int = 8,
        every_n_epochs: int = 5,
        cam_threshold: float | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        stages: list[str] | None = None,
    ) -> None:
        super().__init__(["val"] if stages is None else stages, every_n_epochs)
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if cam_threshold is not None and not 0 <= cam_threshold < 1:
            raise ValueError(f"cam_threshold must be in [0, 1), got {cam_threshold}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.num_images, self.cam_threshold = num_images, cam_threshold
        self.mean, self.std = mean, std

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.normalization(trainer)

    def normalization(self, trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, 1, 1) mean and std of the images: the arguments, else the DataModule's."""
        stats = image_normalization(trainer, self.mean, self.std)
        if stats is None:
            raise ValueError(
                "LogCAMOverlay needs the mean and std the images were normalized with: pass "
                "mean and std, or use a DataModule with image_mean and image_std (got "
                f"{type(getattr(trainer, 'datamodule', None)).__name__})"
            )
        return stats

    def make_metrics(self, stage: str) -> FirstBatch:
        return FirstBatch(self.num_images)

    def update(
        self, metrics: FirstBatch, outputs: Mapping[str, Any], batch: Any, pl_module
    ) -> None:
        if metrics.values is not None:
            return
        if not isinstance(batch, Mapping) or "image" not in batch:
            raise ValueError("LogCAMOverlay needs dict batches with the normalized 'image'")
        n = self.num_images
        metrics.keep(
            {
                "image": batch["image"].float(),
                "cams": outputs[CAMS].float(),
                "boxes": torch.stack(  # the first GT box of each image; any box form
                    [torch.as_tensor(b).cpu().reshape(-1, 4)[0] for b in outputs[BOXES][:n]]
                ),
                "label": outputs[LABEL],
            }
        )

    def report(
        self, stage: str, metrics: FirstBatch, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        metrics.gather(trainer.world_size)  # every rank: the first rows in dataset order
        if not trainer.is_global_zero or metrics.values is None:
            return
        batch = metrics.values
        tau = self.threshold(stage, trainer)
        mean, std = self.normalization(trainer)
        maps = normalize_cams(batch["cams"], tuple(batch["image"].shape[-2:]))
        panels, captions = [], []
        for i in range(len(maps)):
            box = boxes_from_scoremap(maps[i].numpy(), np.array([tau]))[0][0]
            image = (batch["image"][i] * std + mean).clamp(0, 1)
            overlay = overlay_panel(image, maps[i], batch["boxes"][i], box)
            panels.append(torch.cat([image, overlay], 2))
            captions.append(f"class {int(batch['label'][i])}, tau={tau:.2f}")
        log_images(trainer, f"{stage}/cam_overlay", panels, captions)

    def threshold(self, stage: str, trainer: Trainer) -> float:
        """``cam_threshold``, else the logged ``{stage}/maxboxacc_threshold``."""
        if self.cam_threshold is not None:
            return self.cam_threshold
        key = f"{stage}/{THRESHOLD_KEY}"
        value = trainer.callback_metrics.get(key)
        if value is None:
            raise ValueError(
                f"LogCAMOverlay draws at the CAM threshold {key!r}, which no callback logged: add "
                "callbacks.wsol.callback.LogWSOLMetrics (with boxes) or set cam_threshold"
            )
        return float(value)

    # Drawn at the end of the stage, when every epoch-end hook has logged (the threshold too).
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        return None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        return None

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_epoch_end(trainer, pl_module)
