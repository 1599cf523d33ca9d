"""Backbones by name: one factory for timm and torchvision networks, offline first.

``create_backbone(name, ...)`` builds

- with ``num_classes=0`` (the default) a *trunk*: everything before global pooling, whose forward
  maps (B, 3, H, W) images to unpooled (B, ``num_features``, h, w) feature maps, as CAM methods,
  encoders and discriminators need;
- with ``num_classes > 0`` a classifier with a fresh ``num_classes``-way linear head (timm).

Names: ``torchvision/<arch>`` (``vgg16``, ``resnet50``, ``mobilenet_v2``) builds the torchvision
network, ``timm/<arch>`` or a bare ``<arch>`` the timm one, ``latentlab/vgg`` this suite's small
VGG-like network (``components/vgg.py``; ``model_kwargs`` = its ``widths``, ``convs_per_stage``;
no pretrained weights). Parameter names are those of the
unmodified library model minus its classifier, so the library's ImageNet state dict loads strictly.

Stride surgery is a step after building (``reduce_stride``): the WSOL recipe lowers the output
stride by setting the stride of the last downsampling convolutions to 1 (no dilation) and, for
VGG, dropping the last max-pool; parameter names and shapes do not change, so ImageNet weights
load after it. ``create_backbone(..., output_stride=8)`` applies it.

Offline first: nothing is fetched from a hub. Pretrained weights come from an explicit
``weights_file``: a key of the pretrained-file manifest (``components/pretrained.py``, e.g.
``resnet50``), checksum-verified, or a path (safetensors or a torch state dict,
``components/weights.py``); ``pretrained=True`` without one fails fast, naming the file to get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import timm
import torch
from torch import nn
from torchvision import models

from lightning_modules.components.pretrained import MANIFEST, resolve_weights
from lightning_modules.components.vgg import VGGClassifier, VGGTrunk
from lightning_modules.components.weights import load_local_weights

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Trunk(nn.Module):
    """The children of a library model up to global pooling, under their library names.

    Args:
        children: ``name -> module`` in forward order (e.g. ResNet's ``conv1`` ... ``layer4``).
        num_features: Channels of the output feature map.
    """

    def __init__(self, children: dict[str, nn.Module], num_features: int) -> None:
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for child in self.children():
            x = child(x)
        return x


def _torchvision_trunk(arch: str) -> tuple[Trunk, tuple[str, ...]]:
    """(trunk, the classifier prefixes of the library's state dict) of a torchvision arch."""
    if arch == "vgg16":
        net = models.vgg16(weights=None)
        return Trunk({"features": net.features}, 512), ("classifier.",)
    if arch == "resnet50":
        net = models.resnet50(weights=None)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        return Trunk({n: getattr(net, n) for n in names}, net.fc.in_features), ("fc.",)
    if arch == "mobilenet_v2":
        net = models.mobilenet_v2(weights=None)
        return Trunk({"features": net.features}, net.last_channel), ("classifier.",)
    raise ValueError(f"unknown torchvision backbone {arch!r}; choose from {TORCHVISION}")


TORCHVISION: tuple[str, ...] = ("vgg16", "resnet50", "mobilenet_v2")
LATENTLAB: tuple[str, ...] = ("vgg",)
SOURCES: tuple[str, ...] = ("timm", "torchvision", "latentlab")


def _latentlab_model(arch: str, num_classes: int, model_kwargs: dict[str, Any]) -> nn.Module:
    """This suite's own network ``arch``: a trunk, or with ``num_classes`` a classifier."""
    if arch != "vgg":
        raise ValueError(f"unknown latentlab backbone {arch!r}; choose from {LATENTLAB}")
    if num_classes:
        return VGGClassifier(num_classes, **model_kwargs)
    return VGGTrunk(**model_kwargs)


#: Stride surgery per backbone and output stride: (modules whose stride becomes 1, modules
#: removed). Library output stride 32; the paths are those of the trunk.
STRIDE_SURGERY: dict[str, dict[int, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "torchvision/vgg16": {16: ((), ("features.30",))},
    "torchvision/resnet50": {
        16: (("layer4.0.conv2", "layer4.0.downsample.0"), ()),
        8: (
            (
                "layer3.0.conv2",
                "layer3.0.downsample.0",
                "layer4.0.conv2",
                "layer4.0.downsample.0",
            ),
            (),
        ),
    },
    "torchvision/mobilenet_v2": {
        16: (("features.14.conv.1.0",), ()),
        8: (("features.7.conv.1.0", "features.14.conv.1.0"), ()),
    },
    "timm/mobilenetv1_100": {
        16: (("blocks.4.0.conv_dw",), ()),
        8: (("blocks.3.0.conv_dw", "blocks.4.0.conv_dw"), ()),
    },
}


def canonical_name(name: str) -> str:
    """``<source>/<arch>`` (a source of ``SOURCES``); a bare name is a timm one."""
    source, _, arch = name.rpartition("/")
    if source not in ("", *SOURCES):
        raise ValueError(f"unknown backbone source {source!r} in {name!r}: one of {SOURCES}")
    return f"{source or 'timm'}/{arch}"


def reduce_stride(trunk: nn.Module, name: str, output_stride: int) -> nn.Module:
    """Lower the output stride of ``trunk`` (built by ``create_backbone(name)``) in place.

    Sets the stride of the listed convolutions to 1 and replaces the listed modules (VGG's last
    max-pool) by identities, as in ``STRIDE_SURGERY``; 32 leaves the trunk as it is.

    Raises:
        ValueError: no surgery is known for this backbone and output stride.
    """
    if output_stride == 32:
        return trunk
    rules = STRIDE_SURGERY.get(canonical_name(name), {})
    if output_stride not in rules:
        known = {n: sorted(r) for n, r in STRIDE_SURGERY.items()}
        raise ValueError(
            f"no stride surgery to output stride {output_stride} for {name!r}; known: {known}"
        )
    stride_one, removed = rules[output_stride]
    for path in stride_one:
        trunk.get_submodule(path).stride = (1, 1)
    for path in removed:
        parent, _, child = path.rpartition(".")
        trunk.get_submodule(parent).register_module(child, nn.Identity())
    return trunk


def create_backbone(
    name: str,
    num_classes: int = 0,
    weights_file: str | None = None,
    pretrained: bool = False,
    output_stride: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Build backbone ``name`` (a trunk, or with ``num_classes`` a classifier), offline.

    Args:
        name: ``torchvision/<arch>``, ``timm/<arch>``, a bare timm name (``"resnet10t"``) or
            ``latentlab/vgg``.
        num_classes: 0 for the trunk (unpooled feature maps, ``num_features`` channels); else
            the outputs of a fresh linear head (timm models only).
        weights_file: ImageNet weights of the unmodified library model: a manifest key
            (``resolve_weights``: verified file in the weights folder) or a path to a
            ``.safetensors`` or torch state-dict file; its classifier keys are dropped, every
            other key must match.
        pretrained: Require pretrained weights; hubs are not used, so this needs
            ``weights_file``.
        output_stride: Apply ``reduce_stride`` (e.g. 8 or 16) after building; None keeps 32.
        model_kwargs: Extra constructor arguments of timm and latentlab networks (tests shrink
            widths, e.g. timm's ``channels``, latentlab/vgg's ``widths``).

    Returns:
        The network; ``pretrained_normalization(model)`` gives the mean/std its weights expect.

    Raises:
        ValueError: unknown name, ``pretrained=True`` without ``weights_file``, weights that do
            not match, or an unsupported combination.
        FileNotFoundError: ``weights_file`` is missing (the message says how to get it).
        ChecksumError: a manifest file with the wrong sha256.
    """
    canonical = canonical_name(name)
    source, arch = canonical.split("/", 1)
    if pretrained and weights_file is None:
        raise ValueError(_missing_weights_message(source, arch))
    if source == "torchvision":
        if num_classes or model_kwargs:
            raise ValueError(
                f"{canonical}: torchvision backbones are trunks (num_classes=0, no model_kwargs)"
            )
        model, heads = _torchvision_trunk(arch)
    elif source == "latentlab":
        if weights_file is not None:
            raise ValueError(f"{canonical} has no pretrained weights: leave weights_file unset")
        model, heads = _latentlab_model(arch, num_classes, model_kwargs or {}), ()
    else:
        pooling = {} if num_classes else {"global_pool": ""}
        model = timm.create_model(
            arch, pretrained=False, num_classes=num_classes, **pooling, **(model_kwargs or {})
        )
        heads = _timm_heads(model)
    if weights_file is not None:
        load_local_weights(model, resolve_weights(weights_file), drop_prefixes=heads)
    if output_stride is not None:
        reduce_stride(model, canonical, output_stride)
    return model


def _timm_heads(model: nn.Module) -> tuple[str, ...]:
    head = model.pretrained_cfg.get("classifier", "fc")
    heads: Sequence[str] = head if isinstance(head, list | tuple) else (head,)
    return tuple(f"{h}." for h in heads)


def _missing_weights_message(source: str, arch: str) -> str:
    if source == "latentlab":
        return f"latentlab/{arch} has no pretrained weights: train it (pretrained=False)"
    if any(entry.name == arch for entry in MANIFEST):
        return (
            f"pretrained=True for {source} '{arch}' needs a local weights file (hubs are not "
            f"used offline): pass weights_file={arch}, the manifest file of that key in the "
            f"weights folder (get it with `make weights DOWNLOAD=1 NAMES={arch}`)"
        )
    if source == "torchvision":
        return (
            f"pretrained=True for torchvision '{arch}' needs a local weights file (hubs are not "
            f"used offline). Save torchvision.models.{arch}(weights='DEFAULT').state_dict() on a "
            f"machine with internet, e.g. to weights/{arch}.pth, and pass weights_file=<that path>."
        )
    cfg = _default_cfg(arch)
    hub = getattr(cfg, "hf_hub_id", None) or arch
    return (
        f"pretrained=True for timm model '{arch}' needs a local weights file (hubs are not used "
        f"offline). Download the ImageNet weights of '{hub}' (model.safetensors from "
        f"https://huggingface.co/{hub}) on a machine with internet, e.g. to "
        f"weights/{arch}.safetensors, and pass weights_file=<that path>."
    )


def _default_cfg(name: str):
    try:
        return timm.models.get_pretrained_cfg(name)
    except (RuntimeError, KeyError, ValueError):
        return None


def pretrained_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the input normalisation a model's pretrained weights expect.

    A timm model's pretrained config; ImageNet statistics for torchvision trunks and models
    without one.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
