"""DeconvNet + guided backprop with the resampling fix: the VEBI heatmap (spec section 3).

From layer p, filter q of image I: forward I to p keeping every module's input, start from A^p
with every channel but q zeroed (for a Linear layer, every neuron but q; the activation values,
not a one-hot), and walk the modules back to the input:

- ReLU (guided): R * 1[x_in > 0] * 1[R > 0];
- Conv2d: the transposed convolution (``torch.nn.grad.conv2d_input``: conv_transpose2d with the
  output padding that returns the real input size), bias ignored; Linear: R W;
- MaxPool2d: R routed to the forward argmax ("switches"), overlapping windows accumulating;
- BatchNorm2d (eval): R * gamma / sqrt(var + eps); LocalResponseNorm, Dropout: identity;
  Flatten: reshape; AvgPool2d, AdaptiveAvgPool2d: their gradient.

``resample=True`` is the paper's fix for every Conv2d, MaxPool2d and AvgPool2d with a stride
S > 1: R (H2 x W2) is nearest-resampled to the stride-1 output size H1 + 2O - M + 1 (likewise W,
from the real input size H1, kernel M, padding O), then inverted by the same module at stride 1
on its stored input, which returns exactly H1 x W1. For speed the stride-1 backward is computed
directly (transposed conv at stride 1; argmax switches of a stride-1 max-pool, scattered with
accumulation), not by autograd through a module clone; the tests check the two agree. Without
resampling the walk is guided backprop from the start signal ("Deconv+GB").

Everything is batched over images (and over several filters of one image); no Python loop runs
over pixels or images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.vebi.module_walk import ModuleWalk


def forward_records(modules: Sequence[nn.Module], images: Tensor) -> list[Tensor]:
    """``records[i]`` is the input of ``modules[i]``; the last entry is the last module's output.

    An in-place module (``ReLU(inplace=True)``) gets a copy, so the stored inputs stay intact.
    """
    records = [images]
    for module in modules:
        x = records[-1]
        records.append(module(x.clone() if getattr(module, "inplace", False) else x))
    return records


def filter_table(filters: int | Tensor, batch: int, device: torch.device) -> Tensor:
    """Filters q as a (B, K) long table: an int for every image, (B,) one per image, (B, K)."""
    table = torch.as_tensor(filters, dtype=torch.long, device=device)
    table = table.expand(batch) if table.dim() == 0 else table
    table = table[:, None] if table.dim() == 1 else table
    if table.dim() != 2 or table.shape[0] != batch:
        raise ValueError(f"filters {tuple(table.shape)} do not match {batch} images")
    return table


def filter_signal(activation: Tensor, filters: Tensor) -> Tensor:
    """A^p (B, C, ...) with every channel but ``filters[b]`` zeroed in row b: the start signal."""
    keep = F.one_hot(filters, activation.shape[1]).to(activation.dtype)
    return activation * keep.view(*keep.shape, *(1,) * (activation.dim() - 2))


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _resample(
    signal: Tensor, x_in: Tensor, kernel: tuple[int, int], padding: tuple[int, int]
) -> Tensor:
    """Nearest-resample R to the stride-1 output size H1 + 2O - M + 1 (and W likewise).

    PyTorch's ``"nearest"`` takes source row floor(i H2 / H1d) for row i: strided output j holds
    the stride-1 rows from about j S to j S + S - 1, the windows that start between it and the
    next strided window.
    """
    size = [h + 2 * o - m + 1 for h, o, m in zip(x_in.shape[-2:], padding, kernel, strict=True)]
    return F.interpolate(signal, size=size, mode="nearest")


def _rows(signal: Tensor, batch: int) -> Tensor:
    """R (B K, ...) viewed as (B, K, ...): the K walks that share one stored image."""
    return signal.view(batch, -1, *signal.shape[1:])


def _input_shape(x_in: Tensor, signal: Tensor) -> tuple[int, ...]:
    """The shape of R at a module's input: one row per walk, the stored input's other sizes."""
    return (signal.shape[0], *x_in.shape[1:])


def _linear_vjp(function: Callable[[Tensor], Tensor], x_in: Tensor, signal: Tensor) -> Tensor:
    """The gradient of a *linear* ``function`` (an average pooling) applied to ``signal``; being
    linear, its gradient does not depend on the input values, so it is taken at zero."""
    with torch.enable_grad():
        x = x_in.new_zeros(_input_shape(x_in, signal)).requires_grad_(True)
        (grad,) = torch.autograd.grad(function(x), x, grad_outputs=signal)
    return grad


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding_mode != "zeros":
        raise ValueError(f"the walk inverts zero-padded convolutions, not {conv.padding_mode!r}")
    if conv.padding == "valid":
        return 0, 0
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise ValueError("padding='same' with an even receptive field pads asymmetrically")
        return total[0] // 2, total[1] // 2
    return _pair(conv.padding)


def _check_no_dilation(module: nn.Module) -> None:
    if any(d != 1 for d in _pair(getattr(module, "dilation", 1))):
        raise ValueError(f"the resampling fix assumes dilation 1; {module} is dilated")


def conv_backward(conv: nn.Conv2d, x_in: Tensor, signal: Tensor, resample: bool) -> Tensor:
    """Transposed convolution of R back to the input size; stride 1 after resampling if asked."""
    stride, padding = _pair(conv.stride), _conv_padding(conv)
    if resample and max(stride) > 1:
        _check_no_dilation(conv)
        signal, stride = _resample(signal, x_in, _pair(conv.kernel_size), padding), (1, 1)
    return torch.nn.grad.conv2d_input(
        _input_shape(x_in, signal), conv.weight, signal, stride, padding, conv.dilation, conv.groups
    )


def max_pool_backward(pool: nn.MaxPool2d, x_in: Tensor, signal: Tensor, resample: bool) -> Tensor:
    """R routed to the argmax of each window (switches), with resampled stride-1 switches.

    The switches come from the stored input (B images) and serve its K walks; windows that share
    an argmax add up (``scatter_add_``), as the gradient does.
    """
    kernel, stride, padding = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)
    if resample and max(stride) > 1:
        _check_no_dilation(pool)
        signal, stride = _resample(signal, x_in, kernel, padding), (1, 1)
    _, switches = F.max_pool2d(
        x_in, kernel, stride, padding, pool.dilation, pool.ceil_mode, return_indices=True
    )
    rows = _rows(signal, x_in.shape[0]).flatten(3)  # (B, K, C, H2 W2)
    routed = x_in.new_zeros(*rows.shape[:3], x_in.shape[-2] * x_in.shape[-1])
    routed.scatter_add_(3, switches.flatten(2)[:, None].expand_as(rows), rows)
    return routed.view(_input_shape(x_in, signal))


def avg_pool_backward(pool: nn.AvgPool2d, x_in: Tensor, signal: Tensor, resample: bool) -> Tensor:
    """The average pooling's gradient; at stride 1 on the resampled R if asked."""
    kernel, stride, padding = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)
    if resample and max(stride) > 1:
        signal, stride = _resample(signal, x_in, kernel, padding), (1, 1)

    def pool_at_stride(x: Tensor) -> Tensor:
        return F.avg_pool2d(
            x,
            kernel,
            stride,
            padding,
            pool.ceil_mode,
            pool.count_include_pad,
            pool.divisor_override,
        )

    return _linear_vjp(pool_at_stride, x_in, signal)


def module_backward(module: nn.Module, x_in: Tensor, signal: Tensor, resample: bool) -> Tensor:
    """One step of the walk: R at ``module``'s output -> R at its input.

    ``x_in`` (B, ...) is the module's stored input; ``signal`` holds K >= 1 rows per image
    (B K, ...), the walks of K filters of that image, in image-major order.
    """
    if isinstance(module, nn.ReLU):
        rows = _rows(signal, x_in.shape[0])
        return (rows * ((x_in[:, None] > 0) & (rows > 0))).flatten(0, 1)
    if isinstance(module, nn.LocalResponseNorm | nn.Dropout):
        return signal
    if isinstance(module, nn.Flatten):
        return signal.reshape(_input_shape(x_in, signal))
    if isinstance(module, nn.Linear):
        return signal @ module.weight
    if isinstance(module, nn.BatchNorm2d):
        scale = torch.rsqrt(module.running_var + module.eps)
        scale = scale * module.weight if module.weight is not None else scale
        return signal * scale.view(1, -1, 1, 1)
    if isinstance(module, nn.Conv2d):
        return conv_backward(module, x_in, signal, resample)
    if isinstance(module, nn.MaxPool2d):
        return max_pool_backward(module, x_in, signal, resample)
    if isinstance(module, nn.AvgPool2d):
        return avg_pool_backward(module, x_in, signal, resample)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _linear_vjp(module, x_in, signal)
    raise TypeError(f"the walk has no backward rule for {type(module).__name__}")


def walk_back(
    modules: Sequence[nn.Module], records: Sequence[Tensor], signal: Tensor, resample: bool
) -> Tensor:
    """Carry R (B K, ...) from the last module's output back to the input of the first
    (``records[0]``, B images); see ``module_backward``."""
    for module, x_in in zip(reversed(modules), reversed(records[: len(modules)]), strict=True):
        signal = module_backward(module, x_in, signal, resample)
    return signal


@torch.no_grad()
def deconv_signal(
    walk: ModuleWalk, images: Tensor, layer: str | int, filters: int | Tensor, resample: bool = True
) -> Tensor:
    """R at the input for (layer p, filter q) of each image.

    Args:
        walk: The classifier as a ``ModuleWalk`` (eval mode).
        images: (B, C, H, W) input batch, normalised as the classifier expects.
        layer: Layer p (name or index in ``walk``); Conv2d / Linear are read after their ReLU.
        filters: q for every image (int), per image (B,), or K per image (B, K): the forward and
            the max-pool switches are computed once per image and shared by its K walks.
        resample: The paper's fix for strided layers; False gives Deconv+GB.

    Returns:
        (B, C, H, W), or (B, K, C, H, W) for (B, K) filters.
    """
    end = walk.readout(layer)
    modules = walk.modules[: end + 1]
    records = forward_records(modules, images)
    table = filter_table(filters, images.shape[0], images.device)
    start = filter_signal(records[-1].repeat_interleave(table.shape[1], 0), table.flatten())
    signal = walk_back(modules, records, start, resample)
    several = torch.is_tensor(filters) and filters.dim() == 2
    return signal.unflatten(0, tuple(table.shape)) if several else signal


def unit_max(maps: Tensor) -> Tensor:
    """Non-negative (..., H, W) maps divided by their own max; all-zero maps stay zero."""
    peak = maps.flatten(-2).amax(-1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak[..., None, None]


def to_heatmap(signal: Tensor) -> Tensor:
    """h = sum over channels of |R| at the input, divided by its max: (..., C, H, W) -> [0, 1]."""
    return unit_max(signal.abs().sum(-3))


def deconv_heatmaps(
    walk: ModuleWalk, images: Tensor, layer: str | int, filters: int | Tensor, resample: bool = True
) -> Tensor:
    """The VEBI heatmap (B, H, W), or (B, K, H, W), in [0, 1]; see ``deconv_signal``."""
    return to_heatmap(deconv_signal(walk, images, layer, filters, resample))
