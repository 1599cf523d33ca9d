"""One evaluation of an ``ExemplarSRModule`` on a split: every per-image number the analysis uses.

``evaluate`` runs ``hallucinate`` over a dataset of exemplar items (a DataModule split, or one of
``exemplar_swaps``' wrappers) with m = ``num_exemplars`` (the first m of each item's exemplars;
0 for the m = 0 model) and, with ``uniform=True``, the PWAVE weights forced to 1/m
(``uniform_weights``, the control). Per image, on RGB in [0, 1] clamped (spec section 6):

- ``psnr``, ``ssim`` of I_SR and ``psnr_bicubic``, ``ssim_bicubic`` of the bicubic baseline;
- with ``regions`` in the items (the twin): ``detail_psnr`` (and ``detail_psnr_bicubic``), PSNR over
  the detail-region pixels;
- with ``exemplar_occluded``: ``occluded_weight_1`` / ``_2``, the mean W at H_LR / 2 H_LR on the
  occluded (exemplar, region) pixels (NaN for an image with none occluded; left out when no
  exemplar of the split is occluded);
- with ``pattern_other`` (``exemplar_swaps.SwappedDetail``): ``ncc_other`` and ``ncc_true``, the
  NCC of I_SR's detail with the swapped-in pattern and with the target's own (I_HR's).

``Scores.summary()`` averages them over images (NaN-skipping for the occluded weights).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import track
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from callbacks.image_quality.psnr import psnr
from callbacks.image_quality.ssim import ssim
from datamodules.exemplar_sets import collate_exemplars
from experiments.analysis_output import unit
from experiments.exemplar_sr.detail import detail_ncc, occluded_weight, region_psnr
from lightning_modules.exemplar_sr.pwave import uniform_weights

__all__ = ["Scores", "evaluate"]


@dataclass
class Scores:
    """Per-image numbers of one evaluation: ``values[name]`` (N,), and the first batch's images
    (``images``: ``lr``, ``exemplars``, ``sr``, ``hr`` and W at H_LR ``weights``) for figures."""

    values: dict[str, Tensor]
    images: dict[str, Tensor]

    def summary(self) -> dict[str, float]:
        """The mean of every per-image number (NaN-skipping); NaN when no image has one."""
        return {name: float(torch.nanmean(v.double())) for name, v in self.values.items()}


def _metrics(module, batch: dict[str, Any], m: int) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """The per-image numbers of one batch; (numbers, I_SR, W at H_LR)."""
    device = next(module.parameters()).device
    lr, hr = batch["image_lr"].to(device), batch["image_hr"].to(device)
    exemplars = batch["exemplars"][:, :m].to(device)
    sr, weights = module.hallucinate(lr, exemplars)
    sr01, hr01, bicubic = unit(sr.float()), unit(hr.float()), unit(module.bicubic(lr).float())
    out = {
        "psnr": psnr(sr01, hr01, data_range=1.0),
        "ssim": ssim(sr01, hr01, data_range=1.0),
        "psnr_bicubic": psnr(bicubic, hr01, data_range=1.0),
        "ssim_bicubic": ssim(bicubic, hr01, data_range=1.0),
    }
    if "regions" in batch:
        regions = batch["regions"].to(device)
        out["detail_psnr"] = region_psnr(sr01, hr01, regions)
        out["detail_psnr_bicubic"] = region_psnr(bicubic, hr01, regions)
        if "pattern_other" in batch:
            out["ncc_other"] = detail_ncc(sr01, unit(batch["pattern_other"].to(device)), regions)
            out["ncc_true"] = detail_ncc(sr01, hr01, regions)
    if "exemplar_occluded" in batch and m > 0:
        boxes = batch["exemplar_regions"][:, :m].to(device)
        occluded = batch["exemplar_occluded"][:, :m].to(device)
        for scale, w in enumerate(weights, start=1):
            out[f"occluded_weight_{scale}"] = occluded_weight(w, boxes, occluded, hr.shape[-1])
    return out, sr, weights[0]


@torch.no_grad()
def evaluate(
    module,
    dataset: Dataset,
    num_exemplars: int,
    *,
    uniform: bool = False,
    batch_size: int = 16,
    progress: bool = True,
    description: str = "evaluating",
) -> Scores:
    """Every per-image number of ``module`` (an ``ExemplarSRModule``, eval mode) on ``dataset``.

    Args:
        module: The model; its device is used.
        dataset: Items of ``CelebAExemplarDataModule`` (at least ``num_exemplars`` exemplars each).
        num_exemplars: m given to the model (0: no exemplars).
        uniform: Force W = 1/m (``uniform_weights``); the control.
        batch_size: Items per forward pass.
        progress: Show a progress bar.
        description: The progress bar's label.
    """
    module.eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate_exemplars
    )
    parts: dict[str, list[Tensor]] = {}
    images: dict[str, Tensor] = {}
    context = uniform_weights(module) if uniform and num_exemplars > 0 else contextlib.nullcontext()
    with context:
        for batch in track(loader, description=description) if progress else loader:
            if batch["exemplars"].shape[1] < num_exemplars:
                raise ValueError(
                    f"the items hold {batch['exemplars'].shape[1]} exemplars, "
                    f"{num_exemplars} asked for"
                )
            numbers, sr, weights = _metrics(module, batch, num_exemplars)
            for name, value in numbers.items():
                parts.setdefault(name, []).append(value.float().cpu())
            if not images:
                images = {
                    "lr": batch["image_lr"],
                    "hr": batch["image_hr"],
                    "exemplars": batch["exemplars"][:, :num_exemplars],
                    "sr": sr.float().cpu(),
                    "weights": weights.float().cpu(),
                }
    if not parts:
        raise ValueError(f"{description}: the split has no items")
    values = {k: torch.cat(v) for k, v in parts.items()}
    # no occluded exemplar anywhere (clean data): no occluded-weight number at all
    values = {k: v for k, v in values.items() if not v.isnan().all()}
    return Scores(values, images)
