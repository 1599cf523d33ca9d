"""A suite classifier seen as the heatmap walk needs it: one ``nn.Sequential`` of supported modules.

VEBI explains a classifier F that maps images to class scores. In the suite, F is a part of a
LightningModule: a submodule (``VEBIClassifier.net``, ``FaceAttributeClassifier.model``) or a
trunk, a global average pooling in the module's ``forward`` and a linear head (MinMaxCAM's
``backbone`` -> mean over H, W -> ``fc``). :func:`classifier_view` rebuilds F as nested
``nn.Sequential`` containers that *share* the module's layers (no copy: the weights are the
module's), named by their path in the LightningModule (``backbone.features.0``, ``fc``), so
``ResponseIndex`` and ``ModuleWalk`` read it and panels name its layers as the config does.

The rewrite is the spec's own escape hatch (section 3, Scope: "any other net can be walked by
rewriting it as an nn.Sequential of supported modules"), for the containers whose forward is
known:

- an ``nn.Sequential`` (or a subclass that keeps its forward, as ``components.vgg.VGGTrunk``)
  and ``components.backbones.Trunk``: their children in order;
- torchvision's AlexNet and VGG (``module_walk.KNOWN_LAYOUTS``); the suite's
  ``components.vgg.VGGClassifier``: trunk, global average pooling, flatten, head;
- ``nn.Identity`` (what stride surgery leaves of a removed max-pool) is dropped.

Every leaf must be exactly one of ``module_walk.SUPPORTED`` (a subclass may change the forward,
as timm's ``Conv2dSame`` does). Anything else, a residual block above all, raises a
``ValueError`` that names the module, its type and why: the spec lets ResNets give x and the
lasso, but the walk has no rule to carry a signal back through a skip connection.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from lightning_modules.components.backbones import Trunk
from lightning_modules.components.vgg import VGGClassifier
from lightning_modules.vebi.module_walk import FLATTEN, KNOWN_LAYOUTS, SUPPORTED

__all__ = ["GLOBAL_POOL", "classifier_view", "find_submodule"]

#: The name of the inserted global average pooling (``AdaptiveAvgPool2d(1)``).
GLOBAL_POOL = "global_pool"
#: Suite containers whose forward is a known order of children; GLOBAL_POOL and FLATTEN are
#: inserted modules.
SUITE_LAYOUTS: dict[type[nn.Module], tuple[str, ...]] = {
    VGGClassifier: ("trunk", GLOBAL_POOL, FLATTEN, "head"),
}


def _qualified(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _inserted(name: str) -> nn.Module:
    return nn.AdaptiveAvgPool2d(1) if name == GLOBAL_POOL else nn.Flatten(1)


def _children_in_order(module: nn.Module) -> bool:
    """Whether ``module``'s forward applies its children in registration order."""
    sequential = isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward
    return sequential or type(module) is Trunk


def _unsupported(module: nn.Module, path: str) -> ValueError:
    supported = ", ".join(cls.__name__ for cls in SUPPORTED)
    return ValueError(
        f"VEBI cannot draw heatmaps through {path} ({_qualified(module)}): it is neither one of "
        f"the module types the heatmap walk inverts ({supported}; exactly those types, not "
        "subclasses), nor an nn.Sequential, nor a container of known layout (torchvision "
        "AlexNet / VGG, the suite's Trunk and VGGClassifier). A residual block or a custom "
        "forward has no backward rule in the walk: the spec (VEBI section 3, Scope) lets ResNets "
        "give x and the lasso, not heatmaps. Use a VGG-style classifier (e.g. the backbone "
        "'latentlab/vgg' or 'torchvision/vgg16') or rewrite the net as an nn.Sequential"
    )


def _view(module: nn.Module, path: str) -> nn.Module | None:
    """``module`` as nested Sequentials of supported leaves (None for an Identity)."""
    if type(module) is nn.Identity:
        return None
    if type(module) in SUPPORTED:
        return module
    if _children_in_order(module):
        names = [name for name, _ in module.named_children()]
    else:
        names = SUITE_LAYOUTS.get(type(module)) or KNOWN_LAYOUTS.get(_qualified(module))
        if names is None:
            raise _unsupported(module, path)
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    for name in names:
        if name in (GLOBAL_POOL, FLATTEN):
            parts[name] = _inserted(name)
            continue
        child = _view(getattr(module, name), f"{path}.{name}")
        if child is not None:
            parts[name] = child
    return nn.Sequential(parts)


def find_submodule(module: nn.Module, path: str) -> nn.Module:
    """``module``'s submodule at the dotted ``path``; when absent, a ValueError lists the
    children."""
    try:
        found = module.get_submodule(path)
    except AttributeError:
        found = None
    if found is None or not path:
        children = ", ".join(f"{n} ({type(c).__name__})" for n, c in module.named_children())
        raise ValueError(
            f"{type(module).__name__} has no submodule {path!r} to explain; its children are: "
            f"{children or 'none'}"
        )
    return found


def _nested(path: str, module: nn.Module) -> tuple[str, nn.Module]:
    """(first part of ``path``, ``module`` inside Sequentials named by the other parts)."""
    head, *rest = path.split(".")
    for name in reversed(rest):
        module = nn.Sequential(OrderedDict([(name, module)]))
    return head, module


def classifier_view(module: nn.Module, net: str, head: str | None = None) -> nn.Sequential:
    """F as nested Sequentials sharing ``module``'s layers, named by their paths in ``module``.

    Args:
        module: The LightningModule (or any module) that holds the classifier.
        net: Dotted path of the classifier (images -> scores), or of its trunk when ``head``
            is given.
        head: Dotted path of the linear head that follows the trunk's global average pooling
            (CAM classifiers); None when ``net`` is the whole classifier.

    Raises:
        ValueError: a path names no submodule (the message lists ``module``'s children), or a
            module on the way cannot be walked (the message names it and why).
    """
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    for path in (net,) if head is None else (net, GLOBAL_POOL, FLATTEN, head):
        if path in (GLOBAL_POOL, FLATTEN):
            parts[path] = _inserted(path)
            continue
        view = _view(find_submodule(module, path), path)
        if view is None:
            raise ValueError(f"{path} of {type(module).__name__} is an nn.Identity, not a net")
        name, nested = _nested(path, view)
        if name in parts:
            raise ValueError(f"net {net!r} and head {head!r} must start with different names")
        parts[name] = nested
    return nn.Sequential(parts)
