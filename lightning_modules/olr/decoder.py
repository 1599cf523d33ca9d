"""The reconstruction model R of OLR (paper Table 1) and the Rescale of its eq. (2).

R decodes a label embedding E (L x k, flattened) into an image 2 px smaller than the encoder's
input on each side (176 x 176 for a 178 x 178 crop): Dense 1216 -> 6 x 6 x 512, then 'same'
transposed convs that double the size (``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)``),
3 x 3 'same' convs, one 'valid' conv (24 -> 22), a 32-channel conv and Conv2D_out (3 channels).
Every activation is ReLU, Conv2D_out's too by default (``out_act``). The SSIM part of the loss
scores Conv2D_out, the MSE part ``rescale(Conv2D_out)`` (min-max per image).

Smaller inputs use the same rule (output = image - 2): Table 1's body is cut after its last row
whose output has that size, then the 32-channel conv and Conv2D_out follow. So 90 px inputs keep
rows 0-10 (88 px) and 46 px inputs rows 0-8 (44 px); the supported sizes are 24, 46, 90, 178.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import Tensor, nn

__all__ = ["ReconstructionDecoder", "reconstruction_target", "rescale"]

#: Side of the dense layer's maps (Table 1, row 2).
SEED_SIZE = 6
#: Initial bias of a ReLU Conv2D_out: the middle of [0, 1], so that the output starts alive.
OUT_BIAS = 0.5
#: Input sides R supports: Table 1's (178) and the sizes its rule gives below it.
IMAGE_SIZES = (24, 46, 90, 178)


def reconstruction_target(images: Tensor) -> Tensor:
    """x~ = ``images[..., 1:-1, 1:-1]``: the input crop without its 1-px border (178 -> 176)."""
    return images[..., 1:-1, 1:-1]


def rescale(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Min-max rescaling of each image to [0, 1] over C, H, W (eq. 2, ``eps`` in the denominator).

    Example:
        >>> y = rescale(torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]]))
        >>> y.flatten().tolist()
        [0.0, 0.25, 0.5, 1.0]
    """
    flat = x.flatten(1)
    low = flat.min(dim=1).values.view(-1, *[1] * (x.ndim - 1))
    high = flat.max(dim=1).values.view(-1, *[1] * (x.ndim - 1))
    return (x - low) / (high - low + eps)


def _block(layer: nn.Module, relu: bool = True) -> nn.Sequential:
    return nn.Sequential(layer, nn.ReLU() if relu else nn.Identity())


def _up(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 'same' stride-2 transposed conv: size s -> 2 s."""
    return _block(nn.ConvTranspose2d(in_channels, out_channels, 3, 2, 1, output_padding=1))


def _conv(in_channels: int, out_channels: int, padding: int = 1) -> nn.Sequential:
    return _block(nn.Conv2d(in_channels, out_channels, 3, padding=padding))


def _table_body(features: int, c: int) -> list[tuple[str, nn.Module, int]]:
    """Table 1, rows 1-11: (name, layer with its ReLU, output side)."""
    return [
        ("dense", _block(nn.Linear(features, SEED_SIZE * SEED_SIZE * 8 * c)), 0),
        ("reshape", nn.Unflatten(1, (8 * c, SEED_SIZE, SEED_SIZE)), 6),
        ("convt_12", _up(8 * c, 2 * c), 12),
        ("conv_12", _conv(2 * c, c), 12),
        ("convt_24", _up(c, c), 24),
        ("conv_22_valid", _conv(c, c, padding=0), 22),
        ("convt_44", _up(c, c), 44),
        ("conv_44", _conv(c, c), 44),
        ("convt_88", _up(c, c), 88),
        ("conv_88", _conv(c, c), 88),
        ("convt_176", _up(c, c), 176),
    ]


class ReconstructionDecoder(nn.Module):
    """Label embeddings (B, L, k) or (B, L * k) -> Conv2D_out (B, 3, S, S), S = image_size - 2.

    ``layers`` is an ``nn.Sequential`` whose children are Table 1's rows by name (``dense``,
    ``reshape``, ``convt_12``, ``conv_12``, ``convt_24``, ``conv_22_valid``, ``convt_44``, ...,
    ``conv_final``, ``conv_out``), each with its activation.

    Args:
        num_labels: L (38).
        embedding_dim: k (32); the dense layer reads L * k numbers (1216).
        image_size: Side of the encoder's input crop: 178 (Table 1), or 90, 46, 24 (test sizes).
        channels: The width c of Table 1's 64-channel rows; the others follow it (8 c = 512 after
            the dense layer, 2 c = 128 for the first transposed conv, c / 2 = 32 before Conv2D_out).
        out_act: Activation of Conv2D_out: ``relu`` (DEFAULT, "every activation is ReLU") or
            ``none``.
        out_channels: Colour channels of the output.

    Example:
        >>> decoder = ReconstructionDecoder(embedding_dim=8, image_size=46)
        >>> decoder(torch.rand(2, 38, 8)).shape
        torch.Size([2, 3, 44, 44])
    """

    def __init__(
        self,
        num_labels: int = 38,
        embedding_dim: int = 32,
        image_size: int = 178,
        channels: int = 64,
        out_act: Literal["relu", "none"] = "relu",
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        if out_act not in ("relu", "none"):
            raise ValueError(f"out_act must be 'relu' or 'none', got {out_act!r}")
        if channels < 2 or channels % 2:
            raise ValueError(f"channels must be even and >= 2, got {channels}")
        self.output_size = image_size - 2
        body = _table_body(num_labels * embedding_dim, channels)
        sizes = [size for _, _, size in body]
        if image_size not in IMAGE_SIZES:
            raise ValueError(
                f"image_size must be 178 (Table 1), 90, 46 or 24 (output = image_size - 2), "
                f"got {image_size}"
            )
        cut = len(sizes) - sizes[::-1].index(self.output_size)
        rows = [(name, layer) for name, layer, _ in body[:cut]]
        rows.append(("conv_final", _conv(channels, channels // 2)))
        conv_out = nn.Conv2d(channels // 2, out_channels, 3, padding=1)
        if out_act == "relu":  # a ReLU output whose bias starts negative can be dead everywhere
            nn.init.constant_(conv_out.bias, OUT_BIAS)
        rows.append(("conv_out", _block(conv_out, relu=out_act == "relu")))
        self.layers = nn.Sequential(OrderedDict(rows))

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.layers(embeddings.flatten(1))

    def reconstruct(self, embeddings: Tensor) -> Tensor:
        """The reconstruction x^ = Rescale(R(E)) in [0, 1], (B, 3, S, S)."""
        return rescale(self(embeddings))
