"""OLR's reconstruction stage: the Table 1 decoder maps frozen label embeddings back to images.

Karatsiolis & Kamilaris, "Converting Image Labels to Meaningful and Information-rich Embeddings":
R decodes E (38 x 32) into the 176 x 176 crop x~ (the input without its 1-px border), trained with
L_R = alpha (1 - SSIM(x~, Conv2D_out)) + (1 - alpha) MSE(x~, Rescale(Conv2D_out)), alpha = 0.5,
RMSProp. The paper shows reconstructions (Fig. 6) and the two loss curves, no numbers; the run
reports test SSIM/PSNR (``callbacks.image_quality``) next to the mean-image baseline. The
Siamese encoder comes from the stage before (``--run.init_from`` into ``encoder``) and stays
frozen. Reproduced by ``experiments/olr/*_decoder.yaml``; spec: ``shared/specs/olr.md``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule

from callbacks import keys
from lightning_modules.components.cosine_decay import cosine_decay
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.frozen import FrozenSubmodules
from lightning_modules.components.mean_image import train_mean_image
from lightning_modules.olr.decoder import ReconstructionDecoder, reconstruction_target, rescale
from lightning_modules.olr.frozen_encoder import embed, frozen_encoder
from lightning_modules.olr.losses import reconstruction_loss
from lightning_modules.olr.mean_image import mean_image_scores

__all__ = ["OLRReconstructor"]

LOSSES = ("loss", "loss_ssim", "loss_mse")
BASELINE = ("mse", "ssim_mean_image", "mse_mean_image")


class OLRReconstructor(FrozenSubmodules, LightningModule):
    """Frozen ``encoder`` (SiameseEncoder) + ``decoder`` (ReconstructionDecoder), loss L_R.

    Batches carry ``image`` (B, 3, H, W) in [0, 1] (``datamodules.olr.OLRDataModule``,
    ``pairs=False``). Logged as exact epoch means over all images of all ranks:
    ``{train,val,test}/loss`` (L_R), ``/loss_ssim`` (mean 1 - SSIM of Conv2D_out) and
    ``/loss_mse`` (MSE of the rescaled output), and for val/test ``/mse`` (MSE of the
    reconstruction), ``/ssim_mean_image`` and ``/mse_mean_image``: the mean train image's scores
    against the same targets. The mean train image (the ``mean_image`` buffer, saved in the
    checkpoint) is computed once at setup from the DataModule's train loader's dataset, each rank
    summing its share and the sums added across ranks. ``validation_step`` / ``test_step``
    return ``INPUTS`` (x), ``PREDS`` (x^ = Rescale(R(E)), in [0, 1]) and ``TARGET_IMAGES`` (x~),
    for ``callbacks.image_quality.LogImageQuality`` and
    ``callbacks.image_to_image.LogImageToImagePanel``.

    Args:
        num_labels: L (38).
        embedding_dim: k (32 in the paper).
        widths: The Siamese encoder's trunk widths (as in its stage; None = its DEFAULT).
        convs_per_stage: The Siamese encoder's conv blocks per trunk stage.
        embed_act: The Siamese encoder's label-layer activation.
        image_size: Side of the input images (178; 90, 46 or 24 for tests); outputs are 2 px
            smaller.
        channels: Width c of Table 1's 64-channel decoder rows.
        out_act: Activation of Conv2D_out: ``relu`` (DEFAULT) or ``none``.
        ssim_weight: alpha of L_R (0.5).
        lr: RMSProp learning rate (DEFAULT 1e-4; the paper's value is OCR-garbled).
        cosine_decay: Decay the learning rate to zero along a cosine over the run's optimizer
            steps; False (PAPER: none stated) keeps it constant.
    """

    evaluation_outputs = (keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES)
    frozen = ("encoder",)

    def __init__(
        self,
        num_labels: int = 38,
        embedding_dim: int = 32,
        widths: list[int] | None = None,
        convs_per_stage: int = 2,
        embed_act: Literal["relu", "linear"] = "relu",
        image_size: int = 178,
        channels: int = 64,
        out_act: Literal["relu", "none"] = "relu",
        ssim_weight: float = 0.5,
        lr: float = 1e-4,
        cosine_decay: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = frozen_encoder(self.hparams)
        self.decoder = ReconstructionDecoder(
            num_labels, embedding_dim, image_size, channels, out_act
        )
        side = self.decoder.output_size
        self.register_buffer("mean_image", torch.zeros(3, side, side))
        self.register_buffer("mean_image_count", torch.zeros((), dtype=torch.long))
        names = [f"{s}/{n}" for s in ("train", "val", "test") for n in LOSSES]
        self.means = EpochMeans(names + [f"{s}/{n}" for s in ("val", "test") for n in BASELINE])

    def decode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """x^ = Rescale(R(E)): embeddings (B, L, k) -> images (B, 3, S, S) in [0, 1]."""
        return rescale(self.decoder(embeddings))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """x^ of images (B, 3, H, W) in [0, 1] through the frozen encoder and the decoder."""
        return self.decode(embed(self.encoder, images))

    forward = reconstruct

    # --- the mean-image baseline ---------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the data's size and labels; compute the mean train image once (all ranks)."""
        check_datamodule(self, {"num_attributes": self.hparams.num_labels})
        datamodule = getattr(self.trainer, "datamodule", None)
        data_size = getattr(datamodule, "hparams", {}).get("image_size")
        if data_size is not None and data_size != self.hparams.image_size:
            raise ValueError(
                f"OLRReconstructor: --model.init_args.image_size={self.hparams.image_size} but "
                f"--data.init_args.image_size={data_size}; give both the same value"
            )
        if stage == "predict" or datamodule is None or self.mean_image_count > 0:
            return
        mean, count = train_mean_image(self, reconstruction_target)
        self.mean_image.copy_(mean.to(self.mean_image))
        self.mean_image_count.fill_(int(count))

    # --- steps -----------------------------------------------------------------------------------

    def _step(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        images = batch["image"]
        target = reconstruction_target(images)
        conv_out = self.decoder(embed(self.encoder, images))
        loss = reconstruction_loss(conv_out, target, self.hparams.ssim_weight)
        values = {
            f"{stage}/loss": loss.total,
            f"{stage}/loss_ssim": loss.ssim,
            f"{stage}/loss_mse": loss.mse,
        }
        preds = rescale(conv_out.detach())
        if stage != "train":
            if self.mean_image_count == 0:
                raise RuntimeError(
                    "OLRReconstructor: no mean train image; the DataModule must serve a train "
                    "loader (datamodules.olr.OLRDataModule does)"
                )
            baseline_ssim, baseline_mse = mean_image_scores(self.mean_image, target)
            values[f"{stage}/mse"] = (preds.float() - target.float()).square().mean()
            values[f"{stage}/ssim_mean_image"] = baseline_ssim.mean()
            values[f"{stage}/mse_mean_image"] = baseline_mse.mean()
        train = stage == "train"
        self.means.log(
            self, values, batch_size=images.shape[0], on_step=train, on_epoch=True, prog_bar=True
        )
        return {
            "loss": loss.total,
            keys.INPUTS: images,
            keys.PREDS: preds,
            keys.TARGET_IMAGES: target,
        }

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return _evaluation_outputs(self._step(batch, "val"))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return _evaluation_outputs(self._step(batch, "test"))

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Reconstructions x^ (B, 3, S - 2, S - 2) of clean images, one predict loader per split."""
        return {keys.PREDS: self(batch["image"]), keys.IMAGE_ID: batch["image_id"]}

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """RMSProp on the decoder only (the encoder is frozen), with ``cosine_decay`` stepped per
        batch."""
        optimizer = torch.optim.RMSprop(self.decoder.parameters(), lr=self.hparams.lr)
        if not self.hparams.cosine_decay:
            return optimizer
        return cosine_decay(optimizer, self.trainer)


def _evaluation_outputs(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: out[k] for k in (keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES)}
