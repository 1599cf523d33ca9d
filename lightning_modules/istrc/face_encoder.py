"""ISTRC's face encoder E: a face image to a unit vector z on S^(dim-1) (spec ``istrc``,
Architecture item 1).

The paper uses a pre-trained, frozen 128-d FaceNet whose outputs have ||z||_2 = 1; no such weights
can be downloaded here, so E is (DEFAULT) a backbone of the suite's factory
(``components.backbones.create_backbone``: ``inception_resnet_v2`` for real runs, a small
``latentlab/vgg`` at the test scale) -> global average pool -> Linear(-> dim) -> L2-normalise,
either loaded from a local file (``weights_file``) or trained as a stand-in with FaceNet's triplet
loss (``istrc.facenet_module.FaceNetTriplet``). Every later ISTRC stage uses it frozen:
``frozen_face_encoder`` builds it with ``requires_grad=False`` in eval mode, and a LightningModule
that holds it as ``encoder`` keeps it there with ``components.frozen.FrozenSubmodules``
(``frozen = ("encoder",)``).

Input (a decision of this suite: the module does the resize and the standardisation, so every
stage feeds E what it feeds the BEGAN, real crops and decoded images alike): float images
(B, 3, H, W) in [-1, 1], i.e. x / 127.5 - 1 of the uint8 crop (``CelebADataModule(normalize=
"signed")``). E resizes them to ``input_size`` (bilinear; antialiased when it shrinks them; the
64 px crop goes to 160 px, FACENET's input; at the test scale the 32 px crop is fed as it is,
``input_size=32``) and standardises them as FACENET does, (x_uint8 - 127.5) / 128, which on the
[-1, 1] scale is x * 127.5 / 128 (resizing and this scaling commute). The last step normalises in
float32 whatever the autocast dtype, so |‖z‖ - 1| < 1e-5 (spec assertion 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_modules.components.backbones import create_backbone
from lightning_modules.components.frozen import freeze
from lightning_modules.components.pretrained import WeightsNotFoundError, resolve_weights
from lightning_modules.components.weights import load_state, read_state_dict

__all__ = ["FaceNetEncoder", "frozen_face_encoder", "standardise"]

#: FACENET's standardisation (x_uint8 - 127.5) / 128 of a [-1, 1] image x = x_uint8 / 127.5 - 1.
FACENET_SCALE = 127.5 / 128.0
#: The prefix of the encoder's weights in a ``FaceNetTriplet`` checkpoint.
CHECKPOINT_PREFIX = "encoder."


def standardise(images: Tensor, input_size: int) -> Tensor:
    """[-1, 1] images (B, 3, H, W) -> FACENET's input (B, 3, input_size, input_size).

    Example:
        >>> white = torch.ones(1, 3, 2, 2)  # uint8 255 on the [-1, 1] scale
        >>> standardise(white, 4).shape, float(standardise(white, 2).max())  # (255 - 127.5) / 128
        (torch.Size([1, 3, 4, 4]), 0.99609375)
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if tuple(images.shape[2:]) != (input_size, input_size):
        shrink = max(images.shape[2:]) > input_size
        images = F.interpolate(
            images,
            size=(input_size, input_size),
            mode="bilinear",
            align_corners=False,
            antialias=shrink,
        )
    return images * FACENET_SCALE


class FaceNetEncoder(nn.Module):
    """backbone -> global average pool -> Linear(-> dim) -> L2-normalise: E(x) on S^(dim-1).

    Args:
        backbone: A name of ``create_backbone`` (``inception_resnet_v2``; ``latentlab/vgg`` with
            ``model_kwargs={"widths": [16, 32, 64]}`` at the test scale), built as a trunk.
        dim: Size of z (128, the paper's; 512 for VGGFace2-style weights; 32 at the test scale).
        input_size: Side of the network input the images are resized to (160; 32 at test scale).
        weights_file: The whole encoder's weights, loaded strictly after building: a state dict
            of this class (``backbone.*``, ``projection.*``; a manifest key or a path, through
            ``resolve_weights``) or a ``FaceNetTriplet`` checkpoint (its ``encoder.*`` part is
            taken). None: the stand-in's random initialisation (logged), to be trained. A missing
            file is an error naming it and how to get one; nothing is substituted.
        backbone_weights: ImageNet weights of the trunk alone (``create_backbone``'s
            ``weights_file``), a start for training the stand-in; None: random (the spec's
            DEFAULT, ``pretrained=False``).
        model_kwargs: Extra constructor arguments of the backbone (tests shrink it).
    """

    def __init__(
        self,
        backbone: str = "inception_resnet_v2",
        dim: int = 128,
        input_size: int = 160,
        weights_file: str | None = None,
        backbone_weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dim < 1 or input_size < 1:
            raise ValueError(f"dim and input_size must be positive, got {dim} and {input_size}")
        self.dim, self.input_size = dim, input_size
        self.backbone = create_backbone(
            backbone, weights_file=backbone_weights, model_kwargs=model_kwargs
        )
        self.projection = nn.Linear(self.backbone.num_features, dim)
        if weights_file is not None:
            self.load_weights(weights_file)

    def forward(self, images: Tensor) -> Tensor:
        """[-1, 1] images (B, 3, H, W) -> unit vectors z (B, dim), float32."""
        features = self.backbone(standardise(images, self.input_size))  # (B, C, h, w)
        z = self.projection(features.mean(dim=(2, 3)))
        with torch.autocast(z.device.type, enabled=False):  # the norm in float32 under AMP too
            return F.normalize(z.float(), dim=1)

    def load_weights(self, weights_file: str | Path) -> None:
        """Load the encoder's weights from ``weights_file`` (see the class), strictly.

        Raises:
            WeightsNotFoundError: the file is missing (the message names it and how to get one).
            ValueError: its keys or shapes do not match this encoder's (listed by name).
        """
        try:
            path = resolve_weights(weights_file)
        except WeightsNotFoundError as error:
            raise WeightsNotFoundError(
                f"FaceNetEncoder: {error}. The file is the encoder's state dict (backbone.*, "
                "projection.*) or a FaceNetTriplet checkpoint: train the stand-in "
                "(lightning_modules.istrc.facenet_module.FaceNetTriplet) and pass its "
                "checkpoint, or convert a FaceNet model to this layout; weights_file: null "
                "trains the stand-in instead"
            ) from None
        state = read_state_dict(path)
        if not any(k.startswith("backbone.") for k in state) and any(
            k.startswith(CHECKPOINT_PREFIX) for k in state
        ):
            cut = len(CHECKPOINT_PREFIX)
            state = {k[cut:]: v for k, v in state.items() if k.startswith(CHECKPOINT_PREFIX)}
        load_state(self, state, source=str(path))


def frozen_face_encoder(weights_file: str | None, **kwargs: Any) -> FaceNetEncoder:
    """A ``FaceNetEncoder`` for the later ISTRC stages: weights loaded, no gradients, eval mode.

    ``weights_file`` is explicit: the trained stand-in's checkpoint or a converted FaceNet. None
    only where the weights come afterwards, from ``run.init_from`` (the CLI loads them before the
    fit; the log says so). Keep the holding module's copy in eval mode with
    ``components.frozen.FrozenSubmodules``.

    Args:
        weights_file: As ``FaceNetEncoder``'s.
        kwargs: The other ``FaceNetEncoder`` arguments (``backbone``, ``dim``, ...).
    """
    if weights_file is None:
        rank_zero_info("frozen_face_encoder: no weights_file: its weights must come from init_from")
    return freeze(FaceNetEncoder(weights_file=weights_file, **kwargs))
