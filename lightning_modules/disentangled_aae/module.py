"""The disentangled adversarial autoencoder: Stage A, the adversarial autoencoder (AAE).

Browatzki & Wallraven, "Robust Discrimination and Generation of Faces using Compact, Disentangled
Embeddings", ICCV Workshops 2019. Reproduced by ``experiments/disentangled_aae/*.yaml``; the
suite's spec is summarised in ``docs/results/disentangled_aae.md``.

Stage A (``stage="ae"``) trains a ResNet-18 encoder E (image -> z in R^99), an inverted
ResNet-18 generator G (z -> image in [-1, 1]), a latent discriminator D_z (prior samples
z* ~ N(0, I) against encodings) and a DCGAN image discriminator D_x (real images against
reconstructions and random faces G(z*)) on the objective of Eqs. 1-5 (``aae_losses``). Each
iteration: one D_z update, one D_x update, one E + G update (``components.adversarial_update``),
each with its own Adam (5e-5, betas (0, 0.999)). Deviations from the paper: none in the objective;
the pixel scale of L_rec (0-255), the prior N(0, I), the non-saturating BCE and the 1:1 update
ratio are the spec's decisions for what the paper leaves unstated (section 8, item 6), each a
constructor argument.

Batches: ``image`` float (B, 3, S, S) in [-1, 1] (``datamodules.disentangled_aae``). Logged, as
exact epoch means over all images of all ranks: ``train/loss_rec`` (L1, 0-255), ``loss_adv``,
``loss_enc``, ``loss_gen`` (the E/G side's non-saturating terms), ``loss_eg``, ``loss_dz``,
``loss_dx``, ``dz_real``/``dz_fake`` and ``dx_real``/``dx_rec``/``dx_sample`` (the
discriminators' mean probabilities); ``{val,test}/rmse`` (per-image RMSE on the 0-255 scale, the
paper's Table 1 measure), ``/l1`` and ``/rmse_mean_image`` (the mean train image as the
prediction). ``validation_step``/``test_step`` return ``INPUTS`` and ``TARGET_IMAGES`` (x),
``PREDS`` (x~), ``REAL`` (x) and ``FAKE`` (G(z*)), all in [0, 1], for the image-quality, FID and
panel callbacks.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule
from torch import Tensor

from callbacks import keys
from lightning_modules.components.adversarial_update import network_update
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.dcgan_discriminator import DCGANDiscriminator
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.latent_discriminator import LatentDiscriminator
from lightning_modules.components.mean_image import train_mean_image
from lightning_modules.components.resnet_encoder import ResNetEncoder
from lightning_modules.components.resnet_generator import ResNetGenerator
from lightning_modules.disentangled_aae.aae_losses import (
    autoencoder_loss,
    image_discriminator_loss,
    latent_discriminator_loss,
    reconstruction_l1,
)

__all__ = ["DisentangledAAE"]

TRAIN_LOGS = (
    "loss_rec",
    "loss_adv",
    "loss_enc",
    "loss_gen",
    "loss_eg",
    "loss_dz",
    "loss_dx",
    "dz_real",
    "dz_fake",
    "dx_real",
    "dx_rec",
    "dx_sample",
)
EVAL_LOGS = ("rmse", "l1", "rmse_mean_image")
OUTPUTS = (keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES, keys.REAL, keys.FAKE)


class DisentangledAAE(LightningModule):
    """E, G, D_z, D_x of the adversarial autoencoder (Stage A).

    Args:
        stage: ``"ae"``: Stage A, the adversarial autoencoder.
        latent_dim: Size of z (99).
        image_size: Side of the images (128 in the paper; 64 or 32 on CPU).
        encoder_channels: Base width b of the ResNet-18 encoder (64 = torchvision's).
        generator_channels: Base width b of the inverted ResNet-18 generator (64).
        discriminator_channels: Base width of the DCGAN image discriminator (64).
        latent_hidden: Width of D_z's three hidden layers (1000).
        latent_dropout: D_z's dropout (0.2).
        lambda_ae: lambda_AE of Eq. 5 (0.9).
        w_gen: Weight of L_gen in Eq. 5 (1 as printed; the spec's decision 5).
        pixel_scale: Range on which L_rec is measured (255: the 0-255 pixel scale).
        lr: Adam learning rate of E, G, D_z and D_x (5e-5).
        betas: Adam betas ((0, 0.999)).
    """

    evaluation_outputs = OUTPUTS

    def __init__(
        self,
        stage: Literal["ae"] = "ae",
        latent_dim: int = 99,
        image_size: int = 128,
        encoder_channels: int = 64,
        generator_channels: int = 64,
        discriminator_channels: int = 64,
        latent_hidden: int = 1000,
        latent_dropout: float = 0.2,
        lambda_ae: float = 0.9,
        w_gen: float = 1.0,
        pixel_scale: float = 255.0,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.0, 0.999),
    ) -> None:
        super().__init__()
        if stage != "ae":
            raise ValueError(f"stage must be 'ae', got {stage!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = ResNetEncoder(latent_dim, encoder_channels)
        self.generator = ResNetGenerator(latent_dim, image_size, generator_channels)
        self.latent_discriminator = LatentDiscriminator(
            latent_dim, latent_hidden, dropout=latent_dropout
        )
        self.image_discriminator = DCGANDiscriminator(image_size, discriminator_channels)
        self.register_buffer("mean_image", torch.zeros(3, image_size, image_size))
        self.register_buffer("mean_image_count", torch.zeros((), dtype=torch.long))
        names = [f"train/{n}" for n in TRAIN_LOGS]
        self.means = EpochMeans(names + [f"{s}/{n}" for s in ("val", "test") for n in EVAL_LOGS])

    # --- inference -------------------------------------------------------------------------------

    def forward(self, images: Tensor) -> Tensor:
        """Reconstructions G(E(x)) of images (B, 3, S, S) in [-1, 1], in [-1, 1]."""
        return self.generator(self.encoder(images))

    def encode(self, images: Tensor) -> Tensor:
        """z = E(x): (B, 3, S, S) in [-1, 1] -> (B, latent_dim)."""
        return self.encoder(images)

    def generate(self, z: Tensor) -> Tensor:
        """G(z): (B, latent_dim) -> images (B, 3, S, S) in [-1, 1]."""
        return self.generator(z)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n prior samples z* ~ N(0, I) on the module's device."""
        return torch.randn(n, self.hparams.latent_dim, device=self.device, generator=generator)

    # --- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the image size against the data; compute the mean train image once."""
        check_datamodule(self, {"image_size": self.hparams.image_size})
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "predict" or datamodule is None or self.mean_image_count > 0:
            return
        mean, count = train_mean_image(self)
        self.mean_image.copy_(mean.to(self.mean_image))
        self.mean_image_count.fill_(count)

    # --- steps -----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["image"]
        hp = self.hparams
        opt_eg, opt_dz, opt_dx = self.optimizers()
        z = self.encoder(x)
        reconstructions = self.generator(z)
        prior = self.sample_prior(x.shape[0])
        samples = self.generator(prior)
        d_z, d_x = self.latent_discriminator, self.image_discriminator
        logs: dict[str, Tensor] = {}

        def dz_loss(encoded: Tensor) -> Tensor:
            real, fake = d_z(prior), d_z(encoded)
            logs["dz_real"], logs["dz_fake"] = _mean_probability(real), _mean_probability(fake)
            return latent_discriminator_loss(real, fake)

        def dx_loss(rec: Tensor, sample: Tensor) -> Tensor:
            real, fake_rec, fake_sample = d_x(x), d_x(rec), d_x(sample)
            logs["dx_real"] = _mean_probability(real)
            logs["dx_rec"] = _mean_probability(fake_rec)
            logs["dx_sample"] = _mean_probability(fake_sample)
            return image_discriminator_loss(real, fake_rec, fake_sample, hp.lambda_ae, hp.w_gen)

        def eg_loss() -> Tensor:
            rec = reconstruction_l1(x, reconstructions, hp.pixel_scale)
            terms = autoencoder_loss(
                rec, d_x(reconstructions), d_z(z), d_x(samples), hp.lambda_ae, hp.w_gen
            )
            logs.update(
                loss_rec=terms.rec, loss_adv=terms.adv, loss_enc=terms.enc, loss_gen=terms.gen
            )
            return terms.total

        logs["loss_dz"] = network_update(self, opt_dz, dz_loss, z)
        logs["loss_dx"] = network_update(self, opt_dx, dx_loss, reconstructions, samples)
        logs["loss_eg"] = network_update(self, opt_eg, eg_loss)
        values = {f"train/{k}": v.detach() for k, v in logs.items()}
        self.means.log(self, values, batch_size=x.shape[0], on_step=True, on_epoch=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, batch_idx, "test")

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, ...]:
        """Adam per player, in this order: E + G, D_z, D_x."""
        hp = self.hparams
        kwargs = {"lr": hp.lr, "betas": tuple(hp.betas)}
        autoencoder = [*self.encoder.parameters(), *self.generator.parameters()]
        return (
            torch.optim.Adam(autoencoder, **kwargs),
            torch.optim.Adam(self.latent_discriminator.parameters(), **kwargs),
            torch.optim.Adam(self.image_discriminator.parameters(), **kwargs),
        )

    # --- helpers ---------------------------------------------------------------------------------

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> dict[str, Tensor]:
        if self.mean_image_count == 0:
            raise RuntimeError(
                "DisentangledAAE: no mean train image; evaluate through a DataModule with a "
                "train split (datamodules.disentangled_aae.DisentangledAAEDataModule)"
            )
        x = batch["image"]
        reconstructions = self(x)
        # a fixed draw per batch (and rank), the same every epoch: FID compares like with like
        seed = batch_idx * self.trainer.world_size + self.trainer.global_rank
        noise = torch.Generator(device=self.device).manual_seed(seed)
        samples = self.generator(self.sample_prior(x.shape[0], noise))
        scale = self.hparams.pixel_scale / 2
        rmse = ((x - reconstructions) * scale).square().flatten(1).mean(1).sqrt()
        baseline = ((x - self.mean_image) * scale).square().flatten(1).mean(1).sqrt()
        values = {
            f"{stage}/rmse": rmse.mean(),
            f"{stage}/l1": reconstruction_l1(x, reconstructions, self.hparams.pixel_scale),
            f"{stage}/rmse_mean_image": baseline.mean(),
        }
        self.means.log(self, values, batch_size=x.shape[0], on_epoch=True, prog_bar=True)
        unit = _to_unit(x)
        return {
            keys.INPUTS: unit,
            keys.TARGET_IMAGES: unit,
            keys.REAL: unit,
            keys.PREDS: _to_unit(reconstructions),
            keys.FAKE: _to_unit(samples),
        }


def _mean_probability(logits: Tensor) -> Tensor:
    return torch.sigmoid(logits.detach().float()).mean()


def _to_unit(images: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped (the callbacks' range)."""
    return ((images.detach().float() + 1) / 2).clamp(0, 1)
