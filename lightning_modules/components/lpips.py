"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), VGG and AlexNet.

The distance of two images: both go through a fixed input scaling and an ImageNet trunk
(torchvision's ``vgg16`` or ``alexnet`` ``features``); at each of five tapped ReLU outputs the
features are unit-normalized along the channels, their squared differences weighted per channel
by a learned non-negative 1 x 1 linear head (no bias), averaged over the pixels; the five layer
values are summed. :class:`LPIPS` is an ``nn.Module`` returning one value per image pair, usable
as a training loss (gradients flow to the images, its own weights are frozen) and, through
``callbacks/lpips.py``, as an evaluation metric.

Weights, offline: the trunk's ImageNet weights come from a local torchvision state-dict file
(``trunk_weights``: the manifest key of ``TRUNK_KEYS``, ``vgg16`` or ``alexnet``, resolved and
checksum-verified by ``components/pretrained.py``, or a path), the
linear heads from the files the installed ``lpips`` package ships (``lpips/weights/v0.1/``), read
by path. Nothing is downloaded; a random trunk only when asked for with ``random_trunk=True``.

Input range: images in [-1, 1], as LPIPS defines them; ``normalize=True`` takes [0, 1] images and
maps them to [-1, 1] first (``2 x - 1``), as ``lpips.LPIPS(...)(x, y, normalize=True)`` does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_modules.components.pretrained import manifest_entry, resolve_weights
from lightning_modules.components.weights import load_local_weights, read_state_dict

__all__ = ["LPIPS", "TRUNK_FILES", "TRUNK_KEYS", "lpips_head_file"]

#: Per net: the indices of ``features`` that end each tapped block (after its last ReLU).
SPLITS: dict[str, tuple[int, ...]] = {
    "vgg": (4, 9, 16, 23, 30),  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    "alex": (2, 5, 8, 10, 12),  # relu1 .. relu5
}
#: Per net: the key of its trunk's torchvision ImageNet file in the pretrained-file manifest.
TRUNK_KEYS: dict[str, str] = {"vgg": "vgg16", "alex": "alexnet"}
#: Per net: that file's name and download address (from the manifest).
TRUNK_FILES: dict[str, tuple[str, str]] = {
    net: (manifest_entry(key).file, manifest_entry(key).url) for net, key in TRUNK_KEYS.items()
}
#: LPIPS's input scaling for [-1, 1] images: ``(x - SHIFT) / SCALE`` per RGB channel.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: Added to the channel norm before dividing by it (LPIPS's value).
NORM_EPS = 1e-10


def lpips_head_file(net: str) -> Path:
    """The linear-head weights of ``net`` the installed ``lpips`` package ships (v0.1)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "LPIPS linear heads come from the lpips package, which is not installed: "
            "pip install lpips"
        )
    return Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"


class _Trunk(nn.Module):
    """torchvision's ``features`` under the name its state-dict files use (``features.N...``)."""

    def __init__(self, net: str) -> None:
        super().__init__()
        build = torchvision.models.vgg16 if net == "vgg" else torchvision.models.alexnet
        with torch.device("meta"):  # the classifier is never materialized
            features = build(weights=None).features  # weights=None: never downloads
        self.features = features.to_empty(device="cpu")
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()  # a random trunk; a weights file overwrites it


def _load_trunk(net: str, trunk_weights: str | None, random_trunk: bool) -> nn.Sequential:
    trunk = _Trunk(net)
    key = TRUNK_KEYS[net]
    if trunk_weights is None:
        if not random_trunk:
            raise ValueError(
                f"LPIPS({net!r}) needs trunk_weights: {key!r}, the manifest key of torchvision's "
                f"ImageNet file {manifest_entry(key).file} (get it with `make weights DOWNLOAD=1 "
                f"NAMES={key}`), or its path; random_trunk=True for a random trunk (tests only)"
            )
        return trunk.features
    if random_trunk:
        raise ValueError("LPIPS: give trunk_weights or random_trunk=True, not both")
    path = resolve_weights(trunk_weights)
    load_local_weights(trunk, path, drop_prefixes=("classifier.",))
    return trunk.features


def _load_heads(net: str, path: Path, channels: list[int]) -> list[Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS linear heads not found: {path} (pip install lpips)")
    state = read_state_dict(path)
    heads = []
    for i, c in enumerate(channels):
        weight = state.get(f"lin{i}.model.1.weight")
        if weight is None or tuple(weight.shape) != (1, c, 1, 1):
            raise ValueError(f"{path}: no lin{i}.model.1.weight of shape (1, {c}, 1, 1)")
        if (weight < 0).any():
            raise ValueError(f"{path}: lin{i} has negative weights; LPIPS heads are >= 0")
        heads.append(weight.float())
    return heads


class LPIPS(nn.Module):
    """The LPIPS distance of image pairs: ``forward(x, y)`` returns (N,), one value per pair.

    Args:
        net: ``"vgg"`` (VGG16 trunk) or ``"alex"`` (AlexNet trunk).
        trunk_weights: torchvision's ImageNet state-dict file of the trunk: its manifest key
            (``TRUNK_KEYS``: ``vgg16``, ``alexnet``) or a path (``resolve_weights``); only
            ``features.*`` keys are used, ``classifier.*`` ones are ignored.
        random_trunk: Use a randomly initialised trunk instead (tests); required when
            ``trunk_weights`` is None, so a missing file is never silently replaced.
        normalize: Inputs are in [0, 1] (mapped to [-1, 1]); default False: inputs in [-1, 1].
        head_weights: The linear heads file; default that of the installed ``lpips`` package.

    The module is frozen (``requires_grad=False``) and has no dropout or batch norm, so train
    and eval modes compute the same values; gradients flow to ``x`` and ``y``. Inputs are
    (N, 3, H, W) floating point and are computed in float32 with autocast off.
    """

    def __init__(
        self,
        net: str = "vgg",
        trunk_weights: str | None = None,
        random_trunk: bool = False,
        normalize: bool = False,
        head_weights: str | None = None,
    ) -> None:
        super().__init__()
        if net not in SPLITS:
            raise ValueError(f"LPIPS net must be one of {sorted(SPLITS)}, got {net!r}")
        self.net = net
        self.normalize = normalize
        features = _load_trunk(net, trunk_weights, random_trunk)
        bounds = (0, *SPLITS[net])
        self.blocks = nn.ModuleList(
            features[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )
        channels = [
            [m for m in block if isinstance(m, nn.Conv2d)][-1].out_channels for block in self.blocks
        ]
        path = lpips_head_file(net) if head_weights is None else Path(head_weights).expanduser()
        for i, weight in enumerate(_load_heads(net, path, channels)):
            self.register_buffer(f"head{i}", weight)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def heads(self) -> list[Tensor]:
        """The five (1, C, 1, 1) non-negative linear heads."""
        return [getattr(self, f"head{i}") for i in range(len(self.blocks))]

    def features(self, x: Tensor) -> list[Tensor]:
        """The unit-normalized (along channels) features of ``x`` at the five tapped layers."""
        if self.normalize:
            x = 2 * x - 1
        h = (x - self.shift) / self.scale
        out = []
        for block in self.blocks:
            h = block(h)
            out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + NORM_EPS))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"LPIPS needs two image batches of one shape (N, 3, H, W), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        with torch.autocast(x.device.type, enabled=False):
            fx, fy = self.features(x.float()), self.features(y.float())
            pairs = zip(fx, fy, self.heads(), strict=True)
            layers = [F.conv2d((a - b) ** 2, w).mean((2, 3)) for a, b, w in pairs]
        return torch.stack(layers).sum(0).flatten()

    @torch.no_grad()
    def pairwise(
        self, x: Tensor, y: Tensor, batch_size: int = 64, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """(Q, N) LPIPS of every pair (x_i, y_j), each image's features computed once.

        Per layer, the pixel mean of sum_c w_c (a_c - b_c)^2 is (|A|^2 + |B|^2 - 2 A . B) / HW
        with A = sqrt(w) a flattened: the cross terms of all pairs are one matrix product (in
        ``dtype``; float64 keeps the difference of near-equal terms exact to ~1e-12). Equal to
        ``forward`` on each pair up to that rounding (tested). x (Q, 3, H, W) and y (N, 3, H, W)
        must have one H x W; features of all of y are held at once (VITON's 2,032 test items at
        256 x 192 through AlexNet: about 3.9 GB in float32).
        """
        if x.ndim != 4 or y.ndim != 4 or x.shape[1:] != y.shape[1:] or x.shape[1] != 3:
            raise ValueError(
                f"LPIPS.pairwise needs (Q, 3, H, W) and (N, 3, H, W) images of one size, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        device = self.head0.device
        roots = [w.sqrt().flatten() for w in self.heads()]

        def flat(images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
            codes: list[list[Tensor]] = [[] for _ in roots]
            for part in images.split(batch_size):
                with torch.autocast(device.type, enabled=False):
                    features = self.features(part.to(device).float())
                for layer, (f, root) in enumerate(zip(features, roots, strict=True)):
                    codes[layer].append((f * root[:, None, None]).flatten(1).to(dtype))
            stacked = [torch.cat(c) for c in codes]
            return stacked, [c.pow(2).sum(1) for c in stacked]

        (fx, nx), (fy, ny) = flat(x), flat(y)
        total = torch.zeros(x.shape[0], y.shape[0], dtype=dtype, device=device)
        for a, b, na, nb, w in zip(fx, fy, nx, ny, self.heads(), strict=True):
            pixels = a.shape[1] // w.numel()
            total += (na[:, None] + nb[None, :] - 2 * a @ b.T) / pixels
        return total.clamp_min(0).cpu()
