"""Overlay panel of CAMs: image, CAM heatmap, GT box (green) and the CAM box (red).

Works with any module that has ``cams(images, labels) -> (B, h, w)`` (feature-resolution CAMs of
the given classes) and a val loader whose batches carry ``image`` (ImageNet-normalized), ``label``
and ``boxes``. The red box is the largest-contour box at ``cam_threshold`` (by default the
threshold that maximized MaxBoxAcc in the last val epoch when a ``LogWSOLMetrics`` callback runs,
else 0.5). Logged as ``val/cam_overlay`` through ``callbacks.panels.log_images``.
"""

from __future__ import annotations

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer

from callbacks.panels import log_images
from callbacks.wsol.boxes import boxes_from_scoremap
from callbacks.wsol.functional import normalize_cams

_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def overlay_panel(image: torch.Tensor, cam: torch.Tensor, gt: torch.Tensor, box) -> torch.Tensor:
    """(3, H, W) panel: image blended with a jet heatmap of ``cam`` (H, W in [0, 1]), GT box green,
    estimated box red (inclusive pixel corners)."""
    import matplotlib

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


class LogCAMOverlay(Callback):
    """Log image | CAM overlay panels with GT (green) and estimated (red) boxes every few epochs.

    Args:
        num_images: Panels per call (from the first val batch).
        every_n_epochs: Logging period.
        cam_threshold: Fixed CAM threshold; None uses the best MaxBoxAcc threshold of the last val
            epoch when available, else 0.5.
    """

    def __init__(
        self, num_images: int = 8, every_n_epochs: int = 5, cam_threshold: float | None = None
    ):
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.cam_threshold = cam_threshold
        self.batch: dict | None = None

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if self.batch is None and batch_idx == 0 and "boxes" in batch:
            self.batch = {k: batch[k][: self.num_images] for k in ("image", "label", "boxes")}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.batch is None:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        images = self.batch["image"].to(pl_module.device)
        with torch.no_grad():
            cams = pl_module.cams(images, self.batch["label"].to(pl_module.device))
        maps = normalize_cams(cams, tuple(images.shape[-2:])).cpu()
        tau = self._threshold(trainer)
        panels, captions = [], []
        for i in range(len(maps)):
            box = boxes_from_scoremap(maps[i].numpy(), np.array([tau]))[0][0]
            image = (self.batch["image"][i].cpu() * _STD + _MEAN).clamp(0, 1)
            panels.append(
                torch.cat([image, overlay_panel(image, maps[i], self.batch["boxes"][i][0], box)], 2)
            )
            captions.append(f"class {int(self.batch['label'][i])}, tau={tau:.2f}")
        log_images(trainer, "val/cam_overlay", panels, captions)

    def _threshold(self, trainer: Trainer) -> float:
        if self.cam_threshold is not None:
            return self.cam_threshold
        for callback in trainer.callbacks:
            metric = getattr(callback, "best_threshold", None)
            if metric is not None:
                return float(metric)
        return 0.5
