"""``LogLPIPS``: the LPIPS distance of predicted images to their targets, per epoch.

The network is ``lightning_modules.components.lpips.LPIPS``, the same module methods train with
as a loss. ``LPIPSMetric`` holds the sum of the per-image distances and the image count as
float64 states with ``dist_reduce_fx="sum"``, so under DDP the epoch mean is that of one process
over the same images, whatever the share of each process.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import Metric

from callbacks import keys
from callbacks.base import EvaluationCallback
from callbacks.global_log import log_global
from lightning_modules.components.lpips import LPIPS

__all__ = ["LPIPSMetric", "LogLPIPS"]


class LPIPSMetric(Metric):
    """Mean LPIPS of every image pair seen: per image, then averaged at ``compute``.

    Args:
        network: The LPIPS module (its ``normalize`` flag sets the input range); it becomes a
            submodule, so it moves with the metric.

    ``compute`` returns ``{"lpips": mean, "count": images}`` as float64 scalars.
    """

    full_state_update = False

    def __init__(self, network: LPIPS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network = network
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        if not preds.is_floating_point() or not target.is_floating_point():
            raise ValueError(
                f"LPIPS needs floating-point images, got {preds.dtype} and {target.dtype}"
            )
        with torch.no_grad():
            values = self.network(preds.detach(), target.detach())
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> dict[str, Tensor]:
        return {"lpips": self.total / self.count, "count": self.count}


class LogLPIPS(EvaluationCallback):
    """Logs ``{stage}/lpips`` at the end of each validation/test epoch.

    Consumes the step outputs ``PREDS`` and ``TARGET_IMAGES`` (B, 3, H, W) in [0, 1]
    (``callbacks/keys.py``); ``inputs_in_unit_range=False`` takes [-1, 1] images instead. The
    value is the LPIPS distance of each image to its target (``LPIPS``, see
    ``lightning_modules/components/lpips.py``), averaged over all images of the epoch (all
    processes, all dataloaders of the stage). ``last[stage]`` holds the latest values.

    Args:
        net: ``"vgg"`` or ``"alex"``.
        trunk_weights: torchvision's ImageNet file of the trunk: its manifest key (``vgg16``,
            ``alexnet``; ``make weights``) or a path.
        random_trunk: A random trunk instead (tests only); needed when ``trunk_weights`` is None.
        inputs_in_unit_range: Images are in [0, 1] (default) rather than [-1, 1].
        stages: Stages to evaluate, any of ``"val"`` and ``"test"``.
        every_n_epochs: Evaluate validation after every n-th epoch (and the last).
    """

    required_keys = (keys.PREDS, keys.TARGET_IMAGES)

    def __init__(
        self,
        net: str = "vgg",
        trunk_weights: str | None = None,
        random_trunk: bool = False,
        inputs_in_unit_range: bool = True,
        stages: list[str] | None = None,
        every_n_epochs: int = 1,
    ) -> None:
        super().__init__(stages, every_n_epochs)
        self.network = LPIPS(
            net, trunk_weights, random_trunk=random_trunk, normalize=inputs_in_unit_range
        ).eval()
        self.last: dict[str, dict[str, float]] = {}

    def make_metrics(self, stage: str) -> LPIPSMetric:
        return LPIPSMetric(self.network)

    def update(self, metrics, outputs, batch, pl_module: LightningModule) -> None:
        metrics.update(outputs[keys.PREDS], outputs[keys.TARGET_IMAGES])

    def report(self, stage: str, metrics, trainer: Trainer, pl_module: LightningModule) -> None:
        if not metrics.update_called:
            # every rank holds at least one item when the stage has any: all ranks come here
            rank_zero_warn(f"LogLPIPS: no {stage} batches were evaluated; nothing logged")
            return
        values = {name: float(v) for name, v in metrics.compute().items()}  # global under DDP
        self.last[stage] = values
        log_global(pl_module, {f"{stage}/lpips": values["lpips"]})
