"""A learning rate that decays to zero along a cosine over a run's optimizer steps.

``cosine_decay(optimizer, trainer)`` returns what ``LightningModule.configure_optimizers`` returns
for one optimizer with a per-step ``CosineAnnealingLR`` whose length is
``trainer.estimated_stepping_batches`` (Lightning's count of the run's optimizer steps, which
follows max_epochs / max_steps, gradient accumulation and the number of devices).
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR

__all__ = ["cosine_decay"]


def cosine_decay(optimizer: Optimizer, trainer: Any) -> dict[str, Any]:
    """``{"optimizer", "lr_scheduler"}`` with the cosine stepped after every optimizer step.

    Raises:
        ValueError: The run has no finite length (neither max_epochs nor max_steps is set).
    """
    steps = trainer.estimated_stepping_batches
    if not math.isfinite(steps) or steps < 1:
        raise ValueError(
            "cosine_decay needs a finite run length: set trainer.max_epochs or trainer.max_steps"
        )
    schedule = CosineAnnealingLR(optimizer, T_max=int(steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
