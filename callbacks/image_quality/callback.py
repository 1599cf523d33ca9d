"""``LogImageQuality``: SSIM, MS-SSIM and PSNR of predicted images against targets, per epoch."""

from __future__ import annotations

from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from callbacks import keys
from callbacks.base import EvaluationCallback, evaluated_epoch
from callbacks.global_log import log_global
from callbacks.image_quality.inputs import check_data_range
from callbacks.image_quality.metric import ImageQuality
from callbacks.image_quality.ms_ssim import MS_SSIM_WEIGHTS, ms_ssim_scales, scales_note

__all__ = ["LogImageQuality"]


class LogImageQuality(EvaluationCallback):
    """Logs ``{stage}/ssim``, ``{stage}/ms_ssim``, ``{stage}/psnr`` and
    ``{stage}/ms_ssim_scales`` at the end of each validation/test epoch.

    Consumes the step outputs ``PREDS`` and ``TARGET_IMAGES`` (B, C, H, W), floating point, in a
    range of width ``data_range`` (``callbacks/keys.py``). Every value is computed per image and
    then averaged over all images of the epoch (all processes, all dataloaders of the stage):

    - ``ssim``: SSIM with an 11 x 11 gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, over the
      pixels where the window fits, per channel then averaged; per image it equals scikit-image's
      ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=data_range, channel_axis=...)``.
    - ``ms_ssim``: MS-SSIM with the standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
      Five scales need sides of at least 161 px; smaller images get the most scales whose
      coarsest one still fits the 11-px window (3 at 64 px, 4 at 128 px) with the first weights
      renormalized to sum to 1, said in a one-line warning (once per image size) and logged as
      ``ms_ssim_scales`` (the fewest used in the epoch; 5 for the standard definition). Values
      at different numbers of scales are not comparable. See
      ``callbacks.image_quality.ms_ssim``.
    - ``psnr``: ``10 log10(data_range^2 / MSE)`` with each image's own MSE (not the MSE pooled
      over the set), as scikit-image's ``peak_signal_noise_ratio``. An image equal to its target
      has PSNR ``+inf`` (as scikit-image gives), so the epoch's mean is ``+inf``, logged as
      such; a warning then gives the number of such images and the mean over the others.

    Images must be at least 11 x 11 px; integer images, NaN values, mismatched shapes and a
    target that spans more than ``data_range`` are refused with a ``ValueError``. The states
    are sums of per-image float64 values and a count, so under DDP the numbers are those of one
    process over the same images. ``last[stage]`` holds the latest values.

    Args:
        data_range: The width of the images' value range: 1.0 for [0, 1] (the default), 2.0 for
            [-1, 1], 255.0 for 0-255. Never guessed from the data.
        stages: Stages to evaluate, any of ``"val"`` and ``"test"``.
        every_n_epochs: Evaluate validation after every n-th epoch (and the last).
    """

    required_keys = (keys.PREDS, keys.TARGET_IMAGES)

    def __init__(
        self,
        data_range: float = 1.0,
        stages: list[str] | None = None,
        every_n_epochs: int = 1,
    ) -> None:
        super().__init__(stages, every_n_epochs)
        self.data_range = check_data_range(data_range)
        self.last: dict[str, dict[str, float]] = {}
        self._noted_sizes: set[tuple[int, int]] = set()

    def make_metrics(self, stage: str) -> ImageQuality:
        return ImageQuality(self.data_range)

    def update(self, metrics, outputs, batch, pl_module: LightningModule) -> None:
        preds, target = outputs[keys.PREDS], outputs[keys.TARGET_IMAGES]
        metrics.update(preds, target)  # checks the images first
        size = tuple(preds.shape[-2:])
        if size not in self._noted_sizes and ms_ssim_scales(*size) < len(MS_SSIM_WEIGHTS):
            self._noted_sizes.add(size)
            rank_zero_warn(f"LogImageQuality: {scales_note(*size)}")

    def report(self, stage: str, metrics, trainer: Trainer, pl_module: LightningModule) -> None:
        if not metrics.update_called:
            # every rank holds at least one item when the stage has any: all ranks come here
            rank_zero_warn(f"LogImageQuality: no {stage} batches were evaluated; nothing logged")
            return
        values = {name: float(v) for name, v in metrics.compute().items()}  # global under DDP
        self.last[stage] = values
        if values["identical"] > 0:
            rank_zero_warn(
                f"LogImageQuality: {stage} epoch {evaluated_epoch(trainer)}: "
                f"{values['identical']:.0f} of {values['count']:.0f} images equal their target "
                f"(PSNR +inf), so {stage}/psnr is +inf; the mean over the others is "
                f"{values['psnr_finite']:.4f} dB"
            )
        names = ("ssim", "ms_ssim", "psnr", "ms_ssim_scales")
        log_global(pl_module, {f"{stage}/{name}": values[name] for name in names})
