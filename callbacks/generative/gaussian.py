"""Mean, covariance and count of feature vectors from summable float64 states.

The states are the sum of the features, the sum of their outer products and their count, each
reduced by summation across processes, so the statistics of a set split over DDP processes in
any shares equal those of one process holding all of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["FeatureGaussian", "gaussian_from_sums"]


def gaussian_from_sums(total: Tensor, outer: Tensor, count: int | Tensor) -> tuple[Tensor, Tensor]:
    """Mean (d,) and unbiased covariance (d, d) in float64 from ``sum x``, ``sum x x^T`` and n.

    Raises:
        ValueError: fewer than two samples (the covariance is undefined).
    """
    n = int(count)
    if n < 2:
        raise ValueError(f"FeatureGaussian: need at least 2 feature vectors, got {n}")
    total = total.double()
    mean = total / n
    covariance = (outer.double() - torch.outer(total, mean)) / (n - 1)
    # the two products above are mirror images only up to rounding: keep the result symmetric
    return mean, (covariance + covariance.T) / 2


class FeatureGaussian(Metric):
    """Accumulates (N, d) feature batches; ``compute()`` returns ``(mean, covariance, count)``.

    Float64 states ``total`` (d,), ``outer`` (d, d) and ``count``, all ``dist_reduce_fx="sum"``.

    Args:
        num_features: d, the length of each feature vector.
    """

    full_state_update = False

    def __init__(self, num_features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_features < 1:
            raise ValueError(f"FeatureGaussian: num_features must be >= 1, got {num_features}")
        self.num_features = num_features
        d = num_features
        self.add_state("total", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, features: Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"FeatureGaussian: features must be (N, {self.num_features}), "
                f"got {tuple(features.shape)}"
            )
        if not torch.isfinite(features).all():
            raise ValueError("FeatureGaussian: the features contain NaN or inf")
        x = features.detach().double()
        self.total += x.sum(0)
        self.outer += x.T @ x
        self.count += x.shape[0]

    def compute(self) -> tuple[Tensor, Tensor, int]:
        mean, covariance = gaussian_from_sums(self.total, self.outer, self.count)
        return mean, covariance, int(self.count)
