"""The FID Inception-v3: 2048-d pool features of [0, 1] images, as torchmetrics and torch-fidelity.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (TF-slim's Inception-v3 graph of
2015-12-05 converted to PyTorch, with the FID variants of its pooling layers and a 1008-class
head), the network torchmetrics' ``FrechetInceptionDistance`` runs, used as a dependency.
:class:`FIDInceptionV3` feeds it the way torchmetrics does with ``normalize=True``:

1. images (B, 3, H, W), float in [0, 1], any size, are quantized to uint8 by ``(x * 255).byte()``
   (truncation toward zero), in float32; values within one quantization step outside [0, 1]
   are clamped first (the same bytes), values further out raise (a [-1, 1] image is a bug);
2. resized to 299 x 299 (``resize``, below), then mapped to [-1, 1] by ``(x - 128) / 128``;
3. run through the network up to the average pool: (B, 2048) features, float32.

``resize``:

- ``"tf1"`` (default, the field's reference): TensorFlow 1's bilinear resize without
  antialiasing, as the original TensorFlow FID code (torch-fidelity's
  ``interpolate_bilinear_2d_like_tensorflow1x``). Reproduces torch-fidelity's numbers and
  torchmetrics' ``FrechetInceptionDistance(..., antialias=False)``.
- ``"antialias"``: ``F.interpolate(mode="bilinear", antialias=True)``. Reproduces torchmetrics'
  ``FrechetInceptionDistance`` with its default ``antialias=True``.

The module is frozen and always in eval mode (``train()`` keeps it there), and runs in float32
with autocast disabled, whatever the caller's precision; no gradients.

Weights, offline: torch-fidelity's file, the manifest's ``fid_inception``
(``components/pretrained.py``; ``INCEPTION_FILE``, download address ``INCEPTION_URL``), checked
against its sha256 wherever it is read from: ``weights`` when given (a path or the key), else the
standard places, first the weights folder (``$LATENTLAB_WEIGHTS``, ``make weights``), then torch's
hub cache, where torchmetrics' and torch-fidelity's own downloads put it (``hub_cache_path()``).
Nothing is downloaded unless asked for (``download=True``: from the standard address into the
weights folder, verified, within a 15 s network timeout); a missing file raises at once, naming
the file, where it was looked for and the commands that get it. ``random_weights=True`` builds a
randomly initialised network instead (tests). ``fingerprint`` names the weights (sha256 of the
file, or ``random:<seed>``) and the resize, so cached statistics can be tied to the extractor
that made them.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from lightning_modules.components.download import download as fetch
from lightning_modules.components.pretrained import (
    WeightsNotFoundError,
    download_command,
    file_sha256,
    manifest_entry,
    resolve_weights,
)
from lightning_modules.components.weights import load_local_weights

__all__ = [
    "INCEPTION_FILE",
    "INCEPTION_URL",
    "RESIZES",
    "INCEPTION",
    "FIDInceptionV3",
    "hub_cache_path",
    "inception_weights_path",
]

#: The manifest entry of torch-fidelity's FID Inception-v3 weights (TensorFlow's 2015-12-05 graph).
INCEPTION = manifest_entry("fid_inception")
#: Its file name and download address (torch-fidelity's ``URL_INCEPTION_V3``).
INCEPTION_FILE, INCEPTION_URL = INCEPTION.file, INCEPTION.url
#: The resize choices, see the module docstring.
RESIZES = ("tf1", "antialias")
#: The network's input size.
SIZE = 299
#: The network's layers up to the pool features, in forward order.
LAYERS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "MaxPool_1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "MaxPool_2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "AvgPool",
)


def hub_cache_path() -> Path:
    """Where torch-fidelity's download keeps the file: ``<torch.hub.get_dir()>/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_weights_path(weights: str | None = None, download: bool = False) -> Path:
    """The verified weights file: ``weights``, else the weights folder's or the hub cache's copy.

    Args:
        weights: A path, or the manifest key ``fid_inception``; None looks in the standard
            places (the weights folder, then torch's hub cache).
        download: When no copy is found in the standard places, fetch the file from
            ``INCEPTION_URL`` into the weights folder (15 s network timeout, sha256 checked).

    Raises:
        WeightsNotFoundError: no file, naming it, the places looked in and the commands that
            get it (a ``FileNotFoundError``).
        ChecksumError: a copy whose sha256 is not the manifest's.
        NetworkError: ``download=True`` and the address cannot be reached.
    """
    manifest = (INCEPTION,)
    if weights is not None:
        return resolve_weights(weights, manifest=manifest)
    places = (INCEPTION.path(), hub_cache_path())
    for place in places:
        if place.is_file():
            return resolve_weights(place, manifest=manifest)
    if download:
        fetch(INCEPTION, places[0])
        return resolve_weights(places[0], manifest=manifest)
    raise WeightsNotFoundError(
        f"FID Inception weights {INCEPTION.file} are neither in the weights folder "
        f"({places[0]}) nor in torch's hub cache ({places[1]}); get them with "
        f"{download_command(INCEPTION)}, or pass download=True or weights=<path>"
    )


class _Network(FeatureExtractorInceptionV3):
    """torch-fidelity's network, built without weights: its constructor's own load is skipped
    (it is handed an empty file) and the caller loads the weights with the suite's loader."""

    def __init__(self) -> None:
        empty = io.BytesIO()
        torch.save(None, empty)
        empty.seek(0)
        super().__init__("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)

    def load_state_dict(self, state_dict, *args, **kwargs):
        if state_dict is None:  # the empty file of the constructor
            return None
        return super().load_state_dict(state_dict, *args, **kwargs)


class FIDInceptionV3(nn.Module):
    """(B, 3, H, W) images in [0, 1] -> (B, 2048) FID Inception-v3 pool features, float32.

    Args:
        weights: torch-fidelity's weights file (``INCEPTION_FILE``), a path or the manifest key
            ``fid_inception``; None: the copy in the weights folder, else in torch's hub cache.
        resize: ``"tf1"`` (default; torch-fidelity, torchmetrics with ``antialias=False``) or
            ``"antialias"`` (torchmetrics' default), see the module docstring.
        random_weights: A randomly initialised network instead of a file (tests only); the
            initialisation is drawn from ``seed`` without touching the global generator.
        seed: The seed of ``random_weights``.
        download: Fetch the file from its standard address when no copy is found (see
            ``inception_weights_path``); never otherwise.

    Attributes:
        num_features: 2048.
        fingerprint: ``"sha256:<digest of the file>/resize:<resize>"`` or
            ``"random:<seed>/resize:<resize>"``.
    """

    num_features = 2048

    def __init__(
        self,
        weights: str | None = None,
        resize: str = "tf1",
        random_weights: bool = False,
        seed: int = 0,
        download: bool = False,
    ) -> None:
        super().__init__()
        if resize not in RESIZES:
            raise ValueError(
                f"FIDInceptionV3 resize must be one of {list(RESIZES)}, got {resize!r}"
            )
        if random_weights and weights is not None:
            raise ValueError("FIDInceptionV3: give weights or random_weights=True, not both")
        self.resize = resize
        if random_weights:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.network = _Network()
            source = f"random:{seed}"
        else:
            path = inception_weights_path(weights, download)
            self.network = load_local_weights(_Network(), path)
            source = f"sha256:{file_sha256(path)}"
        self.fingerprint = f"{source}/resize:{resize}"
        self.network.requires_grad_(False)
        self.network.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Stays in eval mode (batch norm uses its stored statistics)."""
        return super().train(False)

    def quantize(self, images: Tensor) -> Tensor:
        """[0, 1] float images -> uint8 by ``(x * 255).byte()``; raises on other ranges."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                "FIDInceptionV3 needs float images (B, 3, H, W) in [0, 1], got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        x = images.detach().float()
        step = 1 / 255
        low, high = float(x.min()), float(x.max())
        if not (low > -step and high < 1 + step):  # NaN fails too
            raise ValueError(
                f"FIDInceptionV3 needs images in [0, 1], got values in [{low}, {high}]; "
                "map [-1, 1] images with (x + 1) / 2"
            )
        return (x.clamp(0, 1) * 255).byte()

    def forward(self, images: Tensor) -> Tensor:
        device = next(self.network.parameters()).device
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            x = self.quantize(images.to(device)).float()
            if self.resize == "tf1":
                x = interpolate_bilinear_2d_like_tensorflow1x(
                    x, size=(SIZE, SIZE), align_corners=False
                )
            else:
                x = F.interpolate(
                    x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True
                )
            x = (x - 128) / 128
            for name in LAYERS:
                x = getattr(self.network, name)(x)
            return torch.flatten(x, 1)
