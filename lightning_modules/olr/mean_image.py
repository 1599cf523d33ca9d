"""The mean-image baseline of OLR's reconstructions: the mean train image scored as a prediction.

The decoder is useful only if its reconstructions beat predicting one image for every input. The
baseline is the pixel-wise mean of the train split's reconstruction targets x~ (the images without
their 1-px border; ``components.mean_image.train_mean_image``), scored against each evaluated
target with the suite's SSIM (``callbacks.image_quality.ssim.ssim``, float64) and the MSE.
"""

from __future__ import annotations

from torch import Tensor

from callbacks.image_quality.ssim import ssim

__all__ = ["mean_image_scores"]


def mean_image_scores(mean_image: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """SSIM (N,) and MSE (N,) of ``mean_image`` (3, S, S) against each of ``targets`` (N, 3, S, S).

    Both float64; SSIM is the suite's (``data_range`` 1), MSE the mean over C, H, W.
    """
    if mean_image.shape != targets.shape[1:]:
        raise ValueError(
            f"mean image {tuple(mean_image.shape)} and targets {tuple(targets.shape)} differ "
            "in size; both are reconstruction targets (2 px smaller than the input)"
        )
    preds = mean_image.to(targets).expand_as(targets)
    mse = (preds.double() - targets.double()).square().flatten(1).mean(1)
    return ssim(preds, targets), mse
