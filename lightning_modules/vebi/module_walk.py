"""The heatmap walk's view of a classifier: an ordered list of leaf modules (spec section 3, Scope).

The DeconvNet / guided-backprop walk (``deconv.py``) and the saliency baselines replay a net one
module at a time, so a net is supported only when its forward *is* its leaf modules applied in
order. The contract:

- an ``nn.Sequential`` (nested ones included) is flattened depth-first, in registration order;
- a known container whose forward calls a function between its children is listed in
  ``KNOWN_LAYOUTS`` with that function declared as a module: torchvision's ``AlexNet`` and
  ``VGG`` are ``features -> avgpool -> torch.flatten(x, 1) -> classifier``, so an
  ``nn.Flatten()`` named ``flatten`` is inserted after ``avgpool``;
- every leaf is one of ``SUPPORTED``; anything else (a ResNet block, an attention layer) raises
  a ``TypeError`` that names the module and its type. Any other net can be walked by rewriting it
  as an ``nn.Sequential`` of supported modules.

A *layer* p is named by a module name (``"conv3"``, ``"features.0"``) or index in the list.
Conv2d and Linear layers are read after their ReLU (the spec's x, decision 1): the read-out is
the first ReLU that follows, across BatchNorm2d / LocalResponseNorm / Dropout, before the next
weight or pooling layer; a layer with no such ReLU (the class layer) and every other module is
read at its own output.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

SUPPORTED = (
    nn.Conv2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.BatchNorm2d,
    nn.LocalResponseNorm,
    nn.Dropout,
    nn.Flatten,
    nn.Linear,
)
# Modules that sit between a weight layer and its ReLU without changing which ReLU reads it out.
PASS_THROUGH = (nn.BatchNorm2d, nn.LocalResponseNorm, nn.Dropout)
# Modules whose train-mode forward differs from the eval-mode one the walk inverts.
_EVAL_ONLY = (nn.BatchNorm2d, nn.Dropout)
FLATTEN = "flatten"
# Container class name -> its forward's order of children; FLATTEN marks an inserted nn.Flatten().
KNOWN_LAYOUTS: dict[str, tuple[str, ...]] = {
    "torchvision.models.alexnet.AlexNet": ("features", "avgpool", FLATTEN, "classifier"),
    "torchvision.models.vgg.VGG": ("features", "avgpool", FLATTEN, "classifier"),
}


def _qualified(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _flatten(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Depth-first leaves of ``module`` as (dotted name, module); raises on unsupported ones."""
    if isinstance(module, SUPPORTED):
        return [(prefix or type(module).__name__, module)]
    join = (lambda child: f"{prefix}.{child}") if prefix else (lambda child: child)
    if isinstance(module, nn.Sequential):
        return [
            leaf for name, child in module.named_children() for leaf in _flatten(child, join(name))
        ]
    layout = KNOWN_LAYOUTS.get(_qualified(module))
    if layout is not None:
        leaves = []
        for name in layout:
            if name == FLATTEN:
                leaves.append((join(FLATTEN), nn.Flatten(1)))
            else:
                leaves.extend(_flatten(getattr(module, name), join(name)))
        return leaves
    supported = ", ".join(cls.__name__ for cls in SUPPORTED)
    raise TypeError(
        f"the heatmap walk cannot replay {prefix or 'the net'} ({type(module).__name__}): it is "
        f"neither a supported module ({supported}), an nn.Sequential, nor a container in "
        f"KNOWN_LAYOUTS ({', '.join(KNOWN_LAYOUTS)}); rewrite the net as an nn.Sequential"
    )


@dataclass(frozen=True)
class ModuleWalk:
    """A net as its ordered leaf modules: ``names[i]`` is ``modules[i]``'s dotted name."""

    names: tuple[str, ...]
    modules: tuple[nn.Module, ...]

    @classmethod
    def of(cls, net: nn.Module) -> ModuleWalk:
        """Flatten ``net`` (see the module docstring for the contract); it must be in eval mode."""
        leaves = _flatten(net, "")
        for name, module in leaves:
            if isinstance(module, _EVAL_ONLY) and module.training:
                raise ValueError(f"{name} ({type(module).__name__}) is in train mode; call eval()")
        names, modules = zip(*leaves, strict=True)
        return cls(tuple(names), tuple(modules))

    def index(self, layer: str | int) -> int:
        """Position of ``layer`` (a name or an index, negative ones counted from the end)."""
        if isinstance(layer, str):
            if layer not in self.names:
                raise KeyError(f"no module named {layer!r}; the walk has {list(self.names)}")
            return self.names.index(layer)
        if not -len(self.modules) <= layer < len(self.modules):
            raise IndexError(f"layer {layer} is outside the walk's {len(self.modules)} modules")
        return layer % len(self.modules)

    def readout(self, layer: str | int) -> int:
        """Index of the module whose output is layer p's activation A^p (after its ReLU)."""
        start = self.index(layer)
        if not isinstance(self.modules[start], nn.Conv2d | nn.Linear):
            return start
        for i in range(start + 1, len(self.modules)):
            if isinstance(self.modules[i], nn.ReLU):
                return i
            if not isinstance(self.modules[i], PASS_THROUGH):
                break
        return start

    def layers_of(self, kind: type[nn.Module]) -> list[str]:
        """Names of the modules of type ``kind``, in order (e.g. every Conv2d)."""
        return [n for n, m in zip(self.names, self.modules, strict=True) if isinstance(m, kind)]

    def jump(self, layer: str | int) -> int:
        """Product of the strides up to and including ``layer``: one step of A^p in input pixels.

        The period of the grid artefacts a strided backward can leave in the input, i.e. the
        stride to give ``artefacts.artefact_score``. Square strides are assumed (rows' stride).
        """
        total = 1
        for module in self.modules[: self.readout(layer) + 1]:
            stride = getattr(module, "stride", 1)
            total *= stride[0] if isinstance(stride, tuple) else (stride or 1)
        return total
