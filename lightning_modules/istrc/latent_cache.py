"""ISTRC's stage 3: cache z = E(x) and h = D_enc(x) of every face, per split (spec ``istrc``,
"Losses and training": "cache z = E(x), h = D_enc(x) for all images").

``LatentCache`` is a predict-only LightningModule holding the two frozen encoders: the face
encoder E (any ``nn.Module`` mapping [-1, 1] images (B, 3, S, S) to unit rows (B, D); the spec's
FaceNet stand-in or a converted checkpoint, which does its own resizing and scaling) and the BEGAN
encoder D_enc (``began_networks.BEGANEncoder``, whose weights are the ``discriminator.encoder`` of
a trained ``istrc.began.BEGAN``). Its ``predict_step`` returns ``{"z", "h", "attributes",
"identity", "image_id"}``; ``WriteLatents`` writes them as ``latents_<split>.pt`` (read by
``datamodules.latents.LatentDataModule``), one file per predicted split, every item once in
dataset order whatever the number of DDP processes (``callbacks.split_tensors``).

Images: whatever normalisation the DataModule declares (``image_mean`` / ``image_std``, e.g.
``CelebADataModule(normalize="none")``, [0, 1]) is undone and the [0, 1] images are mapped to
[-1, 1] (x * 2 - 1), the scale BEGAN trained on; a DataModule that declares none must serve
[-1, 1] images. A z row that is not unit (|‖z‖ - 1| >= ``edit_path.UNIT_TOLERANCE``, the start
check of the semantic transformation that cached latents feed) is refused: E must normalise.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn

from callbacks.split_tensors import WriteSplitTensors
from datamodules.latents import LATENTS_PREFIX
from lightning_modules.components.frozen import FrozenSubmodules, freeze
from lightning_modules.istrc.began_networks import BEGANEncoder
from lightning_modules.istrc.edit_path import UNIT_TOLERANCE

__all__ = ["LatentCache", "WriteLatents"]


class LatentCache(FrozenSubmodules, LightningModule):
    """The frozen E and D_enc of ISTRC's stage 3 (predict only).

    Load the weights into ``encoder`` and ``d_enc`` before predicting (``--run.init_from`` parts
    ``{source: discriminator.encoder, target: d_enc}`` of the BEGAN run, and E's run into
    ``encoder``; in code ``cache.d_enc.load_state_dict(began.discriminator.encoder.state_dict())``).

    Args:
        encoder: E, [-1, 1] images (B, 3, S, S) -> unit latents (B, D); frozen here.
        image_size: S of D_enc (the BEGAN's ``image_size``: 64; 32 at test scale).
        filters: n of D_enc (128; 16 at test scale).
        code_size: Nh, the size of h (64; 16 at test scale).
    """

    frozen = ("encoder", "d_enc")

    def __init__(
        self, encoder: nn.Module, image_size: int = 64, filters: int = 128, code_size: int = 64
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = freeze(encoder)
        self.d_enc = freeze(BEGANEncoder(image_size, filters, code_size))
        # signed = images * scale + shift, per channel; identity until a DataModule declares more
        self.register_buffer("scale", torch.ones(3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.zeros(3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(z (B, D) float32 unit rows, h (B, Nh) float32) of the batch's images."""
        signed = images * self.scale + self.shift
        z, h = self.encoder(signed).float(), self.d_enc(signed).float()
        _check_unit(z)
        return z, h

    def setup(self, stage: str) -> None:
        """Undo the DataModule's declared normalisation: [0, 1] images, then x * 2 - 1."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "image_mean"):
            return
        mean = torch.tensor(datamodule.image_mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(datamodule.image_std, dtype=torch.float32).view(3, 1, 1)
        self.scale.copy_(2 * std)
        self.shift.copy_(2 * mean - 1)

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """A CelebA batch -> ``{"z", "h", "attributes" uint8, "identity", "image_id"}``."""
        images = batch["image"]
        size = self.hparams.image_size
        if tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"LatentCache(image_size={size}) takes images (B, 3, {size}, {size}), got "
                f"{tuple(images.shape)}"
            )
        z, h = self(images)
        return {
            "z": z,
            "h": h,
            "attributes": batch["attributes"].to(torch.uint8),
            "identity": batch["identity"].long(),
            "image_id": [str(i) for i in batch["image_id"]],
        }


class WriteLatents(WriteSplitTensors):
    """``latents_<split>.pt`` per predicted split (``datamodules.latents`` reads them).

    Args:
        output_dir: Folder of the files; default the run folder.
    """

    required = ("z", "h", "attributes", "identity", "image_id")

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(prefix=LATENTS_PREFIX, output_dir=output_dir)


def _check_unit(z: Tensor) -> None:
    """Refuse anything but unit rows (B, D)."""
    if z.ndim != 2:
        raise ValueError(f"the encoder E must return latents (B, D), got {tuple(z.shape)}")
    error = (z.norm(dim=1) - 1).abs()
    if not bool((error < UNIT_TOLERANCE).all()):
        raise ValueError(
            "the encoder E must return unit rows (ISTRC's latents lie on the sphere); largest "
            f"| ||z|| - 1 | = {float(error.max()):.3g}"
        )
