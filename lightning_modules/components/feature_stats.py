"""Statistics of feature sets used by the analyses (MinMaxCAM's f vs f^o dispersion)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dispersion(features: Tensor, labels: Tensor) -> tuple[float, float]:
    """Within-class spread of L2-normalized features (thesis Sec. 5.4, f vs f^o).

    Each feature is L2-normalized; its distance to its class mean is averaged within the class;
    returns the mean and standard deviation of those averages over the classes (CUB: f 1.03 +-
    0.34, f^o 1.47 +- 0.38).
    """
    unit = F.normalize(features.double(), dim=1)
    per_class = []
    for c in labels.unique():
        group = unit[labels == c]
        per_class.append((group - group.mean(0)).norm(dim=1).mean())
    spread = torch.stack(per_class)
    return float(spread.mean()), float(spread.std()) if len(spread) > 1 else 0.0
