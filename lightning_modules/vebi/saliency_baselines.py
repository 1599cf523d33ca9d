"""The heatmap baselines of Tab. 3.1 (spec section 3, Baselines), all maps (B, H, W) in [0, 1].

Filter heatmaps, for (layer p, filter q) as chosen by the mu-lasso (they differ from VEBI's only
in how the map is drawn):

- ``deconv_gb_heatmaps``: "Deconv+GB", the VEBI walk without the resampling fix;
- ``upsampled_activation``: A^p_q bilinearly upsampled to the input size (conv layers only).

Class heatmaps, standalone methods on the last conv layer (read after its ReLU) for a class
(default: the predicted one), from the class score S^c (the logit):

- ``gradcam`` (Selvaraju et al., ICCV 2017): ReLU(sum_k w_k A_k), w_k = mean_ij dS/dA_kij;
- ``gradcam_pp`` (Chattopadhyay et al., WACV 2018): w_k = sum_ij alpha_kij ReLU(dS/dA_kij) with
  the closed-form alphas of their exponential score Y = exp(S) (``gradcam_pp_alphas``);
- ``guided_backprop``: the guided-backprop image map of S^c, sum over channels of |dS/dI|;
- ``guided_gradcam``, ``guided_gradcam_pp``: the CAM times the guided-backprop map.

Every map is bilinearly upsampled to the input size where needed and divided by its max.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.vebi.deconv import (
    deconv_heatmaps,
    filter_table,
    forward_records,
    to_heatmap,
    unit_max,
    walk_back,
)
from lightning_modules.vebi.module_walk import ModuleWalk


def _upsampled(maps: Tensor, size: torch.Size) -> Tensor:
    """(B, [K,] h, w) non-negative maps -> bilinear to ``size``, divided by their max."""
    flat = maps.flatten(0, -3)[:, None]
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return unit_max(up.view(*maps.shape[:-2], *size).clamp_min(0))


def deconv_gb_heatmaps(
    walk: ModuleWalk, images: Tensor, layer: str | int, filters: int | Tensor
) -> Tensor:
    """Deconv+GB [157]: the walk of ``deconv.deconv_heatmaps`` with ``resample=False``."""
    return deconv_heatmaps(walk, images, layer, filters, resample=False)


@torch.no_grad()
def upsampled_activation(
    walk: ModuleWalk, images: Tensor, layer: str | int, filters: int | Tensor
) -> Tensor:
    """A^p_q upsampled to the input size: (B, H, W), or (B, K, H, W) for (B, K) filters."""
    activation = forward_records(walk.modules[: walk.readout(layer) + 1], images)[-1]
    if activation.dim() != 4:
        raise ValueError(f"upsampled activation needs a conv layer; {layer!r} is not one")
    table = filter_table(filters, images.shape[0], images.device)
    index = table[:, :, None, None].expand(-1, -1, *activation.shape[-2:])
    maps = activation.gather(1, index)
    several = torch.is_tensor(filters) and filters.dim() == 2
    return _upsampled(maps if several else maps[:, 0], images.shape[-2:])


@torch.no_grad()
def predicted_classes(walk: ModuleWalk, images: Tensor) -> Tensor:
    """argmax of the class scores, (B,)."""
    return forward_records(walk.modules, images)[-1].argmax(1)


def activation_and_gradient(
    walk: ModuleWalk, images: Tensor, classes: Tensor, layer: str | int | None = None
) -> tuple[Tensor, Tensor]:
    """A (B, C, h, w) of ``layer`` (default: the last Conv2d, after its ReLU) and dS^c/dA."""
    layer = walk.layers_of(nn.Conv2d)[-1] if layer is None else layer
    end = walk.readout(layer)
    with torch.no_grad():
        activation = forward_records(walk.modules[: end + 1], images)[-1]
    with torch.enable_grad():
        leaf = activation.detach().requires_grad_(True)
        scores = forward_records(walk.modules[end + 1 :], leaf)[-1]
        (gradient,) = torch.autograd.grad(scores.gather(1, classes[:, None]).sum(), leaf)
    return activation, gradient


def gradcam_pp_alphas(activation: Tensor, gradient: Tensor) -> Tensor:
    """alpha_kij = g_kij^2 / (2 g_kij^2 + (sum_ab A_kab) g_kij^3), g = dS/dA; 0 where the
    denominator is 0.

    The closed form of Chattopadhyay et al. (their Eq. 19) for the score Y = exp(S) after a
    piecewise-linear head: the n-th derivative of Y in A_kij is exp(S) g_kij^n, so exp(S) cancels.
    """
    squared = gradient.square()
    totals = activation.sum((-2, -1), keepdim=True)
    denominator = 2 * squared + totals * gradient.pow(3)
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, squared / safe, torch.zeros_like(squared))


def _cam(walk: ModuleWalk, images: Tensor, classes: Tensor | None, plus_plus: bool) -> Tensor:
    classes = predicted_classes(walk, images) if classes is None else classes
    activation, gradient = activation_and_gradient(walk, images, classes)
    if plus_plus:
        # The per-image factor exp(S) of dY/dA = exp(S) dS/dA is dropped: the max removes it.
        weights = (gradcam_pp_alphas(activation, gradient) * gradient.clamp_min(0)).sum((2, 3))
    else:
        weights = gradient.mean((2, 3))
    cam = (weights[:, :, None, None] * activation).sum(1).clamp_min(0)
    return _upsampled(cam, images.shape[-2:])


def gradcam(walk: ModuleWalk, images: Tensor, classes: Tensor | None = None) -> Tensor:
    """Grad-CAM of ``classes`` (B,) (default: predicted) on the last conv layer, (B, H, W)."""
    return _cam(walk, images, classes, plus_plus=False)


def gradcam_pp(walk: ModuleWalk, images: Tensor, classes: Tensor | None = None) -> Tensor:
    """Grad-CAM++ of ``classes`` (B,) (default: predicted) on the last conv layer, (B, H, W)."""
    return _cam(walk, images, classes, plus_plus=True)


@torch.no_grad()
def guided_backprop(walk: ModuleWalk, images: Tensor, classes: Tensor | None = None) -> Tensor:
    """Guided backprop of S^c to the image, (B, H, W): the walk from a one-hot at the class
    scores without resampling (the gradient with every ReLU guided), sum of |.| over channels."""
    records = forward_records(walk.modules, images)
    classes = records[-1].argmax(1) if classes is None else classes
    start = F.one_hot(classes, records[-1].shape[1]).to(records[-1].dtype)
    return to_heatmap(walk_back(walk.modules, records, start, resample=False))


def guided_gradcam(walk: ModuleWalk, images: Tensor, classes: Tensor | None = None) -> Tensor:
    """Guided Grad-CAM: Grad-CAM times the guided-backprop map, divided by its max."""
    classes = predicted_classes(walk, images) if classes is None else classes
    return unit_max(gradcam(walk, images, classes) * guided_backprop(walk, images, classes))


def guided_gradcam_pp(walk: ModuleWalk, images: Tensor, classes: Tensor | None = None) -> Tensor:
    """Guided Grad-CAM++: Grad-CAM++ times the guided-backprop map, divided by its max."""
    classes = predicted_classes(walk, images) if classes is None else classes
    return unit_max(gradcam_pp(walk, images, classes) * guided_backprop(walk, images, classes))


# Tab. 3.1's rows by name: filter heatmaps take (walk, images, layer, filters), class heatmaps
# take (walk, images, classes).
FILTER_HEATMAPS = {
    "ours": deconv_heatmaps,
    "deconv_gb": deconv_gb_heatmaps,
    "upsampled_activation": upsampled_activation,
}
CLASS_HEATMAPS = {
    "gradcam": gradcam,
    "guided_gradcam": guided_gradcam,
    "gradcam_pp": gradcam_pp,
    "guided_gradcam_pp": guided_gradcam_pp,
}
