"""The receptive field of every layer of a walkable net (spec section 5, "Interpretation"): which
input pixels one unit of A^p can see, for the average images of Fig. 3.5.

Per spatial axis, from the input (r_0 = 1, j_0 = 1, start_0 = 0) through each module l with
kernel M_l, stride S_l and padding O_l (Conv2d, MaxPool2d, AvgPool2d):

    r_l = r_{l-1} + (M_l - 1) j_{l-1}          (size, in input pixels)
    j_l = j_{l-1} S_l                          (jump: one step of A^l, in input pixels)
    start_l = start_{l-1} + ((M_l - 1)/2 - O_l) j_{l-1}   (centre of unit 0)

Coordinates are pixel indices (pixel k's centre is k), so unit i of A^l sees the input rows
start_l + i j_l - (r_l - 1)/2 ... start_l + i j_l + (r_l - 1)/2, some of which may fall outside
the image (padding). ReLU, BatchNorm2d, LocalResponseNorm and Dropout keep the field; from the
first Linear, Flatten or AdaptiveAvgPool2d on, a unit sees the whole image (the spec's rule for FC
layers; an adaptive pool's window depends on the input size). Dilation 1 is assumed, as in the
heatmap walk.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lightning_modules.vebi.module_walk import PASS_THROUGH, ModuleWalk

__all__ = ["ReceptiveField", "layer_field", "receptive_fields"]

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_WHOLE_IMAGE = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


@dataclass(frozen=True)
class ReceptiveField:
    """The field of one layer's units, per axis (rows, cols).

    Attributes:
        size: r, the side of the field in input pixels.
        jump: j, the distance in input pixels between neighbouring units.
        start: the centre of unit (0, 0) in input pixel indices (a half-integer for even r).
        whole_image: the unit sees the whole image (FC layers); the other fields are then the
            ones of the last spatial layer before it and do not describe the unit.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    whole_image: bool = False

    def corner(self, row: int, col: int) -> tuple[int, int]:
        """The input pixel of the top-left corner of unit (row, col)'s field (may be < 0).

        start - (r - 1)/2 = -sum_l O_l j_{l-1} is an integer, so the rounding is exact.
        """
        return tuple(
            round(self.start[a] + i * self.jump[a] - (self.size[a] - 1) / 2)
            for a, i in enumerate((row, col))
        )

    def after(self, module: nn.Module) -> ReceptiveField:
        """The field at the output of ``module`` applied to a map with this field."""
        if self.whole_image or isinstance(module, _WHOLE_IMAGE):
            return ReceptiveField(self.size, self.jump, self.start, whole_image=True)
        if isinstance(module, (nn.ReLU, *PASS_THROUGH)):
            return self
        if not isinstance(module, _WINDOWED):
            raise TypeError(f"no receptive-field rule for {type(module).__name__}")
        if any(d != 1 for d in _pair(getattr(module, "dilation", 1))):
            raise ValueError(f"{type(module).__name__} with dilation is not supported")
        kernel, padding = _pair(module.kernel_size), _pair(module.padding)
        stride = _pair(module.stride or module.kernel_size)  # a pool's default stride is M
        axes = range(2)
        return ReceptiveField(
            size=tuple(self.size[a] + (kernel[a] - 1) * self.jump[a] for a in axes),
            jump=tuple(self.jump[a] * stride[a] for a in axes),
            start=tuple(
                self.start[a] + ((kernel[a] - 1) / 2 - padding[a]) * self.jump[a] for a in axes
            ),
        )


INPUT_FIELD = ReceptiveField(size=(1, 1), jump=(1, 1), start=(0.0, 0.0))


def receptive_fields(walk: ModuleWalk) -> list[ReceptiveField]:
    """``fields[i]`` is the field of ``walk.modules[i]``'s output units."""
    fields, field = [], INPUT_FIELD
    for module in walk.modules:
        field = field.after(module)
        fields.append(field)
    return fields


def layer_field(walk: ModuleWalk, layer: str | int) -> ReceptiveField:
    """The field of layer p's activation A^p (read after its ReLU, as ``ModuleWalk.readout``)."""
    return receptive_fields(walk)[walk.readout(layer)]
