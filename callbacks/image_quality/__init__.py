"""Full-reference image quality: SSIM, MS-SSIM and PSNR of predicted images against targets.

The functions live in their modules (``from callbacks.image_quality.ssim import ssim``):

- ``ssim``: SSIM per image as scikit-image's ``structural_similarity`` with gaussian weights;
- ``ms_ssim``: MS-SSIM per image, and the number of scales that fits small images;
- ``psnr``: PSNR per image from each image's own MSE;
- ``gaussian``: the 11-px gaussian window and its separable filtering of image batches (torch,
  float64, on the images' device);
- ``inputs``: the checks on images and ``data_range`` shared by all of them;
"""
