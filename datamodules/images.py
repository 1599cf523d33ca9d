"""Image decoding and preprocessing shared by the face DataModules (CelebA, FFHQ).

Images are decoded with ``torchvision.io`` to uint8 (3, H, W) RGB; every transform is a
``torchvision.transforms.v2`` pipeline on that tensor: direct antialiased resize to a square,
optional RandAugment on uint8, conversion to float in [0, 1], optional normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from datamodules.formats.errors import FormatError

Normalization = Literal["imagenet", "signed", "none"]
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "signed": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # [0, 1] -> [-1, 1], a tanh generator's range
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


#: Where an FFHQ image lies in CelebA's aligned 178 x 218 frame, (top, left, height, width): FFHQ's
#: alignment rule (side 2 max(2 |eye-eye|, 1.8 |eye-mouth|), centred at eye_avg + 0.1 (mouth_avg -
#: eye_avg)) applied to CelebA's aligned landmarks (eyes (69, 111), (108, 111); mouth corners
#: (73, 152), (105, 152)) gives a 156 x 156 square at x=10, y=37.
FFHQ_IN_CELEBA = (37, 10, 156, 156)
CELEBA_FRAME = (218, 178)  # (height, width) of CelebA's aligned images


def celeba_framing(image: torch.Tensor) -> torch.Tensor:
    """Place a uint8 (3, H, W) FFHQ image in CelebA's aligned frame, (3, 218, 178).

    The image is resized onto the FFHQ square of that frame (``FFHQ_IN_CELEBA``) and the rest is
    filled by repeating its edge pixels, so faces keep the scale and position a CelebA-trained
    model saw (label transfer).
    """
    top, left, side, _ = FFHQ_IN_CELEBA
    height, width = CELEBA_FRAME
    face = v2.functional.resize(image, [side, side], antialias=True)
    padding = [left, top, width - left - side, height - top - side]
    return v2.functional.pad(face, padding, padding_mode="edge")


class RandomIntensity(torch.nn.Module):
    """Multiply a float image in [0, 1] by one factor drawn from U(low, high) (all channels).

    The thesis author's ``changeIntensity`` augmentation (MinMaxCAM, Sec. 5.4 ablation).
    """

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if not 0 <= low <= high:
            raise ValueError(f"intensity range must satisfy 0 <= low <= high, got ({low}, {high})")
        self.low, self.high = low, high

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        factor = torch.empty(()).uniform_(self.low, self.high)
        return image * factor


def read_rgb(path: str | Path) -> torch.Tensor:
    """Decode an image file to uint8 (3, H, W) RGB.

    Raises:
        FormatError: The file is missing, unreadable or not a decodable image (names the file).
    """
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except RuntimeError as err:
        parts = str(err).split(", ", 2)  # "<function>, <source.cpp:line>, <reason>"
        reason = parts[2] if len(parts) == 3 and ".cpp:" in parts[1] else str(err)
        raise FormatError(path, f"cannot read image: {reason.strip()}") from None


def square_transform(
    image_size: int,
    normalize: Normalization = "imagenet",
    randaugment: tuple[int, int] | None = None,
    zoom: float = 0.0,
    framing: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> v2.Compose:
    """uint8 (3, H, W) -> float (3, image_size, image_size), normalised.

    Args:
        image_size: Output side; direct resize (aspect not kept), bilinear, antialiased.
        normalize: ``"imagenet"`` mean/std, ``"signed"`` ([-1, 1]) or ``"none"`` ([0, 1]).
        randaugment: ``(num_ops, magnitude)`` of torchvision's RandAugment, applied on uint8 after
            the resize; None for none.
        zoom: Random zoom in by a factor in ``[1, 1 + zoom]`` about the centre, after the resize
            (training only: it teaches the scale shift between CelebA and FFHQ framing); 0 = off.
        framing: uint8 -> uint8 step before the resize (e.g. ``celeba_framing``); None for none.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {sorted(NORMALIZATIONS)}, got {normalize!r}")
    steps: list = [] if framing is None else [framing]
    steps.append(v2.Resize((image_size, image_size), antialias=True))
    if zoom > 0:
        steps.append(v2.RandomAffine(degrees=0.0, scale=(1.0, 1.0 + zoom)))
    if randaugment is not None:
        steps.append(v2.RandAugment(num_ops=randaugment[0], magnitude=randaugment[1]))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if normalize != "none":
        mean, std = NORMALIZATIONS[normalize]
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return v2.Compose(steps)
