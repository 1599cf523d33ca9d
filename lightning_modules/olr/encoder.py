"""The Siamese encoder S of OLR: a VGG-like trunk, the label-specific layer, one k-vector per label.

Both images of a training pair go through the same ``SiameseEncoder`` (shared weights). The trunk
is the spec's DEFAULT (the paper only says "several conv and pooling layers"): stages of
[Conv 3x3 'same' -> BatchNorm -> ReLU] x 2 + MaxPool 2, widths 32/64/128/256, which take a
178 x 178 crop to 11 x 11 maps (178 -> 89 -> 44 -> 22 -> 11). The label-specific layer (PAPER)
is a 3 x 3 'same' conv to ``L * k`` maps (channel group ``l`` = channels ``[l k, (l + 1) k)``),
ReLU by default (non-negative embeddings with exact zeros for absent labels) or linear; a global
average pool and a reshape give the (L, k) embedding E, whose row ``l`` is e^l.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_modules.components.vgg import VGGTrunk

__all__ = ["SiameseEncoder"]


class SiameseEncoder(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> label embeddings E (B, L, k).

    Args:
        num_labels: L, the number of labels (38 on CelebA without necklace and necktie).
        embedding_dim: k, the dimensions per label (32 in the paper).
        widths: Trunk stage widths (DEFAULT 32/64/128/256: 178 px -> 11 x 11 maps).
        convs_per_stage: Conv -> BN -> ReLU blocks per trunk stage (DEFAULT 2).
        embed_act: Activation of the label-specific layer: ``relu`` (DEFAULT) or ``linear``.
        in_channels: Channels of the input images.

    The state dict carries ``embed_act`` (the buffer ``relu_embeddings``), the one argument that
    leaves the weights' names and shapes alone: weights of a linear encoder refuse to load into a
    ReLU one (a later stage configured unlike the Siamese stage), instead of silently embedding
    otherwise.

    Example:
        >>> encoder = SiameseEncoder(embedding_dim=8, widths=(16, 32, 64))
        >>> encoder(torch.rand(2, 3, 46, 46)).shape
        torch.Size([2, 38, 8])
    """

    def __init__(
        self,
        num_labels: int = 38,
        embedding_dim: int = 32,
        widths: Sequence[int] = (32, 64, 128, 256),
        convs_per_stage: int = 2,
        embed_act: Literal["relu", "linear"] = "relu",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if num_labels < 1 or embedding_dim < 1:
            raise ValueError(
                f"num_labels and embedding_dim must be >= 1, got {num_labels} and {embedding_dim}"
            )
        if embed_act not in ("relu", "linear"):
            raise ValueError(f"embed_act must be 'relu' or 'linear', got {embed_act!r}")
        self.num_labels, self.embedding_dim = num_labels, embedding_dim
        self.trunk = VGGTrunk(widths, in_channels, convs_per_stage)
        self.label_layer = nn.Conv2d(
            self.trunk.out_channels, num_labels * embedding_dim, 3, padding=1
        )
        self.label_act = nn.ReLU() if embed_act == "relu" else nn.Identity()
        self.register_buffer("relu_embeddings", torch.tensor(embed_act == "relu"))
        self.register_load_state_dict_pre_hook(self._check_embed_act)

    def _check_embed_act(
        self, module: nn.Module, state_dict: dict, prefix: str, *_: object
    ) -> None:
        """Load pre-hook: refuse weights trained with the other label activation."""
        given = state_dict.get(prefix + "relu_embeddings")
        if given is not None and bool(given) != bool(self.relu_embeddings):
            trained, here = ("relu", "linear") if bool(given) else ("linear", "relu")
            raise ValueError(
                f"these encoder weights were trained with embed_act={trained!r}, but this "
                f"encoder has embed_act={here!r}: set embed_act (model init_args) to the Siamese "
                "stage's value"
            )

    def label_maps(self, images: Tensor) -> Tensor:
        """The label-specific maps (B, L * k, f, f): group ``l`` = channels ``[l k, (l + 1) k)``."""
        return self.label_act(self.label_layer(self.trunk(images)))

    def forward(self, images: Tensor) -> Tensor:
        pooled = self.label_maps(images).mean(dim=(-2, -1))  # (B, L * k)
        return pooled.view(-1, self.num_labels, self.embedding_dim)  # (B, L, k)
