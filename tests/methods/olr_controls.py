"""Controls of OLR's learning tests, importable by the CLI runs that the tests start."""

from __future__ import annotations

import torch

from lightning_modules.olr.siamese import OLRSiamese


class ShuffledTargets(OLRSiamese):
    """Control: while training, slot l is fitted to the teacher's label l - 1 (rolled targets)."""

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        logits = super().teacher_logits(images)
        return logits.roll(1, dims=1) if self.training else logits
