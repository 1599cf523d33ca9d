"""Full-reference image quality: SSIM, MS-SSIM and PSNR of predicted images against targets.

The functions live in their modules (``from callbacks.image_quality.ssim import ssim``):

- ``ssim``: SSIM per image as scikit-image's ``structural_similarity`` with gaussian weights;
- ``ms_ssim``: MS-SSIM per image, and the number of scales that fits small images;
- ``psnr``: PSNR per image from each image's own MSE;
- ``gaussian``: the 11-px gaussian window and its separable filtering of image batches (torch,
  float64, on the images' device);
- ``inputs``: the checks on images and ``data_range`` shared by all of them;
- ``metric``: ``ImageQuality``, a torchmetrics ``Metric`` whose states are per-image sums;
- ``callback``: ``LogImageQuality``, the evaluation callback logging ``{stage}/ssim``,
  ``{stage}/ms_ssim``, ``{stage}/psnr`` from the ``PREDS`` / ``TARGET_IMAGES`` step outputs.
"""

from callbacks.image_quality.callback import LogImageQuality
from callbacks.image_quality.metric import ImageQuality

__all__ = ["ImageQuality", "LogImageQuality"]
