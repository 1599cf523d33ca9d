"""The disentangled adversarial autoencoder: E, G, D_z, D_x, Phi and Phi^-1 in three stages.

Browatzki & Wallraven, "Robust Discrimination and Generation of Faces using Compact, Disentangled
Embeddings", ICCV Workshops 2019. Reproduced by ``experiments/disentangled_aae/*.yaml``
(``celeba_*`` the paper's configuration, ``synthetic*`` the twin); results in
``docs/results/disentangled_aae.md``.

- ``stage="ae"`` (Stage A): a ResNet-18 encoder E (image -> z in R^99), an inverted ResNet-18
  generator G (z -> image in [-1, 1]), a latent discriminator D_z (prior samples z* ~ N(0, I)
  against encodings) and a DCGAN image discriminator D_x (real images against reconstructions
  and random faces G(z*)), on the objective of Eqs. 1-5 (``aae_losses``). Each iteration: one
  D_z update, one D_x update, one E + G update (``components.adversarial_update``), each with
  its own Adam (5e-5, betas (0, 0.999)).
- ``stage="disentangle"`` (Stage B): E, G (and the discriminators) frozen, in eval mode, still
  differentiable; the MLPs Phi: z -> f and Phi^-1: f -> z (two hidden layers of 1000) train on
  L_Phi (Eq. 14, ``factor_objective``) with Adam (1e-4, betas (0.9, 0.999)). f splits into
  pose 3 | identity 32 | expression 32 | style 32. Batches come from three label sources in
  turn (``batch["source"]``: identity, expression, style; ``SOURCE_FACTORS``).
- ``stage="joint"`` (Stage C): both objectives, all six networks: the D_z and D_x updates of
  Stage A, then one backward of E/G's part of L_AE plus L_Phi on the same labelled batch into
  E, G, Phi, Phi^-1, each keeping its stage's Adam settings (one optimizer, two groups).

Stages chain through checkpoints (``run.init_from``): A's networks start B, B's all six start C.
What the paper leaves unstated (the pixel scale of L_rec, the prior, the GAN loss form and
update ratio, lambda_rec, the margins, which factor is cycled, the style triplet's reading)
follows the spec's decisions (its section 8), each a constructor argument.

Batches: ``image`` float (B, 3, S, S) in [-1, 1] (``datamodules.disentangled_aae``), with
``pose`` (B, 3) radians and, in Stages B and C, the source's labels. Logged as exact epoch means
over all images of all ranks: the training terms of each stage (``train/loss_rec``, ``loss_adv``,
``loss_enc``, ``loss_gen``, ``loss_eg``, ``loss_dz``, ``loss_dx``, the discriminators' mean
probabilities; ``train/phi_total``, ``phi_rec``, ``phi_task``, ``phi_cyc``, ``phi_aug`` and one
``phi_<factor>`` per factor); ``{val,test}/rmse`` (per-image RMSE of G(E(x)) on the 0-255 scale,
the paper's Table 1 measure), ``/l1``, ``/rmse_mean_image`` (the mean train image as the
prediction) and, from Stage B on, ``/rmse_phi`` (of G(Phi^-1(Phi(E(x))))), ``/phi_rec_ratio``
(mean |z - Phi^-1(Phi(z))| / mean |z|) and ``/pose_mae_deg`` (f_p against the pose labels).
``validation_step``/``test_step`` return ``INPUTS`` and ``TARGET_IMAGES`` (x), ``PREDS``
(G(E(x))), ``REAL`` (x) and ``FAKE`` (G(z*)), all in [0, 1], for the image-quality, FID and
panel callbacks.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning import LightningModule
from torch import Tensor
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR

from callbacks import keys
from lightning_modules.components.adversarial_update import network_update
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.dcgan_discriminator import DCGANDiscriminator
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.frozen import FrozenSubmodules, freeze
from lightning_modules.components.latent_discriminator import LatentDiscriminator
from lightning_modules.components.mean_image import train_mean_image
from lightning_modules.components.mlp import MLP
from lightning_modules.components.resnet_encoder import ResNetEncoder
from lightning_modules.components.resnet_generator import ResNetGenerator
from lightning_modules.disentangled_aae.aae_losses import (
    autoencoder_loss,
    image_discriminator_loss,
    latent_discriminator_loss,
    reconstruction_l1,
    reconstruction_loss,
)
from lightning_modules.disentangled_aae.factor_losses import LABEL_KEYS
from lightning_modules.disentangled_aae.factor_objective import (
    SOURCE_FACTORS,
    FactorTerms,
    cycled_factors,
    factor_objective,
)
from lightning_modules.disentangled_aae.factor_split import FactorSplit
from lightning_modules.disentangled_aae.pixels import pixel_rmse, to_unit

__all__ = ["DisentangledAAE"]

Stage = Literal["ae", "disentangle", "joint"]
AE_LOGS = (
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
PHI_LOGS = ("phi_total", "phi_rec", "phi_task", "phi_cyc", "phi_aug")
EVAL_LOGS = ("rmse", "l1", "rmse_mean_image")
PHI_EVAL_LOGS = ("rmse_phi", "phi_rec_ratio", "pose_mae_deg")
OUTPUTS = (keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES, keys.REAL, keys.FAKE)
_AUTOENCODER = ("encoder", "generator", "latent_discriminator", "image_discriminator")


class DisentangledAAE(FrozenSubmodules, LightningModule):
    """E, G, D_z, D_x (Stage A), Phi, Phi^-1 (Stage B), all six (Stage C).

    Args:
        stage: ``"ae"`` (A), ``"disentangle"`` (B) or ``"joint"`` (C).
        latent_dim: Size of z (99).
        image_size: Side of the images (128 in the paper; 64 or 32 on CPU).
        encoder_channels: Base width b of the ResNet-18 encoder (64 = torchvision's).
        encoder_stem: ``imagenet`` (ResNet-18's 7x7/2 conv and max-pool, the paper's encoder) or
            ``cifar`` (a 3x3/1 conv, no pool: small images keep the stage maps the paper's 128 px
            faces get; see ``components.resnet_encoder``).
        generator_channels: Base width b of the inverted ResNet-18 generator (64).
        discriminator_channels: Base width of the DCGAN image discriminator (64).
        latent_hidden: Width of D_z's three hidden layers (1000).
        latent_dropout: D_z's dropout (0.2).
        lambda_ae: lambda_AE of Eq. 5 (0.9).
        w_gen: Weight of L_gen in Eq. 5 (1 as printed; the spec's decision 5).
        pixel_scale: Range on which L_rec is measured (255: the 0-255 pixel scale).
        structural_weight: w of a structural term in L_rec, 0.5 L1 + 0.5 w (1 - SSIM), as the
            authors' later 3FabRec AAE (w = 60); 0 (default) is the paper's Eq. 1.
        lr: Adam learning rate of E, G, D_z and D_x (5e-5).
        betas: Their Adam betas ((0, 0.999)).
        factor_sizes: Widths of f's parts pose, identity, expression, style (3, 32, 32, 32);
            they sum to ``latent_dim``.
        phi_hidden: Hidden widths of Phi and Phi^-1 (1000, 1000).
        phi_lr: Adam learning rate of Phi and Phi^-1 (1e-4).
        phi_betas: Their Adam betas ((0.9, 0.999)).
        lambda_rec: Weight of L_rec^Phi in Eq. 14 (1.0, not given in the paper).
        margin: Triplet margin delta_k for identity, expression and style (1.0, not given).
        lambda_l: Weight of the category term of Eq. 13 (0.25).
        style_triplet: ``same_clip_pos`` (positive from the anchor's clip, negative from another
            clip of the person; the spec's decision 1) or ``literal`` (the text as printed).
        cycle_attrs: Cycle one factor drawn per iteration (``random``) or every factor (``all``).
        cosine_decay: Decay every learning rate to zero along a cosine over the run's epochs
            (not in the paper, whose rates are constant; for short CPU runs).
        seed: Seed of the permutations and triplet draws (with the step and the rank).
    """

    evaluation_outputs = OUTPUTS

    def __init__(
        self,
        stage: Stage = "ae",
        latent_dim: int = 99,
        image_size: int = 128,
        encoder_channels: int = 64,
        encoder_stem: Literal["imagenet", "cifar"] = "imagenet",
        generator_channels: int = 64,
        discriminator_channels: int = 64,
        latent_hidden: int = 1000,
        latent_dropout: float = 0.2,
        lambda_ae: float = 0.9,
        w_gen: float = 1.0,
        pixel_scale: float = 255.0,
        structural_weight: float = 0.0,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.0, 0.999),
        factor_sizes: tuple[int, ...] = (3, 32, 32, 32),
        phi_hidden: tuple[int, ...] = (1000, 1000),
        phi_lr: float = 1e-4,
        phi_betas: tuple[float, float] = (0.9, 0.999),
        lambda_rec: float = 1.0,
        margin: float = 1.0,
        lambda_l: float = 0.25,
        style_triplet: Literal["same_clip_pos", "literal"] = "same_clip_pos",
        cycle_attrs: Literal["random", "all"] = "random",
        cosine_decay: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if stage not in ("ae", "disentangle", "joint"):
            raise ValueError(f"stage must be 'ae', 'disentangle' or 'joint', got {stage!r}")
        if structural_weight < 0:
            raise ValueError(f"structural_weight must be >= 0, got {structural_weight}")
        self.split = FactorSplit(tuple(factor_sizes))
        if self.split.dim != latent_dim:
            raise ValueError(
                f"factor_sizes {list(factor_sizes)} sum to {self.split.dim}; Phi maps z to f of "
                f"the same size, latent_dim={latent_dim}"
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = ResNetEncoder(latent_dim, encoder_channels, stem=encoder_stem)
        self.generator = ResNetGenerator(latent_dim, image_size, generator_channels)
        self.latent_discriminator = LatentDiscriminator(
            latent_dim, latent_hidden, dropout=latent_dropout
        )
        self.image_discriminator = DCGANDiscriminator(image_size, discriminator_channels)
        self.phi = MLP(latent_dim, phi_hidden, latent_dim)
        self.phi_inverse = MLP(latent_dim, phi_hidden, latent_dim)
        self.frozen = _AUTOENCODER if stage == "disentangle" else ()
        for name in self.frozen:
            freeze(getattr(self, name))
        self.register_buffer("mean_image", torch.zeros(3, image_size, image_size))
        self.register_buffer("mean_image_count", torch.zeros((), dtype=torch.long))
        train = [*AE_LOGS] if stage != "disentangle" else []
        if stage != "ae":
            train += [*PHI_LOGS, *(f"phi_{name}" for name in self.split.names)]
        evaluation = [*EVAL_LOGS, *(PHI_EVAL_LOGS if stage != "ae" else ())]
        self.means = EpochMeans(
            [f"train/{n}" for n in train]
            + [f"{s}/{n}" for s in ("val", "test") for n in evaluation]
        )

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

    def factors(self, images: Tensor) -> Tensor:
        """f = Phi(E(x)): (B, 3, S, S) -> (B, latent_dim), parts in ``self.split``."""
        return self.phi(self.encoder(images))

    def decode_factors(self, f: Tensor) -> Tensor:
        """x^ = G(Phi^-1(f)): (B, latent_dim) -> images (B, 3, S, S) in [-1, 1]."""
        return self.generator(self.phi_inverse(f))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n prior samples z* ~ N(0, I) on the module's device."""
        return torch.randn(n, self.hparams.latent_dim, device=self.device, generator=generator)

    # --- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the image size and stage against the data; compute the mean train image once."""
        check_datamodule(self, {"image_size": self.hparams.image_size, "stage": self.hparams.stage})
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "predict" or datamodule is None or self.mean_image_count > 0:
            return
        images = getattr(datamodule, "splits", {}).get("train")  # the plain training images
        mean, count = train_mean_image(self, dataset=images)
        self.mean_image.copy_(mean.to(self.mean_image))
        self.mean_image_count.fill_(count)

    # --- steps -----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        stage = self.hparams.stage
        if stage == "ae":
            logs = self._adversarial_updates(batch, with_factors=False)
        elif stage == "joint":
            logs = self._adversarial_updates(batch, with_factors=True)
        else:
            (opt_phi,) = _as_tuple(self.optimizers())
            z = self.encoder(batch["image"])  # frozen, eval mode
            terms: list[FactorTerms] = []

            def phi_loss() -> Tensor:
                terms.append(self._factor_terms(batch, z))
                return terms[0].total

            network_update(self, opt_phi, phi_loss)
            logs = _factor_logs(terms[0])
        values = {f"train/{k}": v.detach() for k, v in logs.items()}
        self.means.log(
            self, values, batch_size=batch["image"].shape[0], on_step=True, on_epoch=True
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, batch_idx, "test")

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Reconstructions G(E(x)) in [0, 1] (``PREDS``) of the served images, with their ids."""
        return {keys.PREDS: to_unit(self(batch["image"])), keys.IMAGE_ID: batch["image_id"]}

    def on_train_epoch_end(self) -> None:
        """Step the cosine schedules (``cosine_decay``), once per epoch."""
        for scheduler in _as_tuple(self.lr_schedulers() or ()):
            scheduler.step()

    def configure_optimizers(self) -> tuple[Optimizer, ...] | tuple[list, list]:
        """Adam per player. Stage A: E + G, D_z, D_x. Stage B: Phi + Phi^-1. Stage C: one Adam
        with the groups E + G (Stage A's settings) and Phi + Phi^-1 (Stage B's), D_z, D_x. With
        ``cosine_decay`` each gets a cosine schedule to zero over ``trainer.max_epochs``."""
        optimizers = self._optimizers()
        if not self.hparams.cosine_decay:
            return optimizers
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError("cosine_decay needs trainer.max_epochs >= 1 (the schedule's length)")
        schedulers = [CosineAnnealingLR(opt, T_max=epochs) for opt in optimizers]
        return list(optimizers), schedulers

    def _optimizers(self) -> tuple[Optimizer, ...]:
        hp = self.hparams
        ae = {"lr": hp.lr, "betas": tuple(hp.betas)}
        phi = {"lr": hp.phi_lr, "betas": tuple(hp.phi_betas)}
        autoencoder = [*self.encoder.parameters(), *self.generator.parameters()]
        mappings = [*self.phi.parameters(), *self.phi_inverse.parameters()]
        if hp.stage == "disentangle":
            return (Adam(mappings, **phi),)
        discriminators = (
            Adam(self.latent_discriminator.parameters(), **ae),
            Adam(self.image_discriminator.parameters(), **ae),
        )
        if hp.stage == "ae":
            return (Adam(autoencoder, **ae), *discriminators)
        groups = [{"params": autoencoder, **ae}, {"params": mappings, **phi}]
        return (Adam(groups), *discriminators)

    # --- helpers ---------------------------------------------------------------------------------

    def _adversarial_updates(self, batch: dict[str, Any], with_factors: bool) -> dict[str, Tensor]:
        """One iteration of Stage A (or C: E/G's update also carries L_Phi of the batch)."""
        x = batch["image"]
        hp = self.hparams
        opt_eg, opt_dz, opt_dx = _as_tuple(self.optimizers())
        z = self.encoder(x)
        prior = self.sample_prior(x.shape[0])
        # one generator pass over encodings and prior samples: its BatchNorm statistics are those
        # of the mix in training as in its running averages, which evaluation then uses
        reconstructions, samples = self.generator(torch.cat([z, prior])).chunk(2)
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
            rec = reconstruction_loss(x, reconstructions, hp.pixel_scale, hp.structural_weight)
            terms = autoencoder_loss(
                rec, d_x(reconstructions), d_z(z), d_x(samples), hp.lambda_ae, hp.w_gen
            )
            logs.update(
                loss_rec=terms.rec, loss_adv=terms.adv, loss_enc=terms.enc, loss_gen=terms.gen
            )
            if not with_factors:
                return terms.total
            factor_terms = self._factor_terms(batch, z)
            logs.update(_factor_logs(factor_terms))
            return terms.total + factor_terms.total

        logs["loss_dz"] = network_update(self, opt_dz, dz_loss, z)
        logs["loss_dx"] = network_update(self, opt_dx, dx_loss, reconstructions, samples)
        logs["loss_eg"] = network_update(self, opt_eg, eg_loss)
        return logs

    def _factor_terms(self, batch: dict[str, Any], z: Tensor) -> FactorTerms:
        """L_Phi of a labelled batch (its ``source`` says which factors it labels)."""
        hp = self.hparams
        sources = set(batch.get("source", ()))
        if len(sources) != 1 or next(iter(sources)) not in SOURCE_FACTORS:
            raise ValueError(
                f"Stage {hp.stage!r} needs batches of one label source (batch['source'] in "
                f"{sorted(SOURCE_FACTORS)}), got {sorted(sources)}: use "
                "datamodules.disentangled_aae.DisentangledAAEDataModule with stage set"
            )
        wanted = {key for keys_ in LABEL_KEYS.values() for key in keys_}
        labels = {key: batch[key] for key in wanted if key in batch}
        step = self.global_step * self.trainer.world_size + self.trainer.global_rank
        generator = torch.Generator().manual_seed(hp.seed * 1_000_003 + step)
        return factor_objective(
            z,
            self.phi,
            self.phi_inverse,
            lambda codes: self.encoder(self.generator(codes)),
            self.split,
            labels,
            SOURCE_FACTORS[next(iter(sources))],
            cycled_factors(self.split, hp.cycle_attrs, generator),
            generator,
            hp.lambda_rec,
            hp.margin,
            hp.lambda_l,
            hp.style_triplet,
        )

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> dict[str, Tensor]:
        if self.mean_image_count == 0:
            raise RuntimeError(
                "DisentangledAAE: no mean train image; evaluate through a DataModule with a "
                "train split (datamodules.disentangled_aae.DisentangledAAEDataModule)"
            )
        x = batch["image"]
        z = self.encoder(x)
        reconstructions = self.generator(z)
        # a fixed draw per batch (and rank), the same every epoch: FID compares like with like
        seed = batch_idx * self.trainer.world_size + self.trainer.global_rank
        noise = torch.Generator(device=self.device).manual_seed(seed)
        samples = self.generator(self.sample_prior(x.shape[0], noise))
        scale = self.hparams.pixel_scale
        values = {
            f"{stage}/rmse": pixel_rmse(x, reconstructions, scale).mean(),
            f"{stage}/l1": reconstruction_l1(x, reconstructions, self.hparams.pixel_scale),
            f"{stage}/rmse_mean_image": pixel_rmse(x, self.mean_image, scale).mean(),
        }
        if self.hparams.stage != "ae":
            f = self.phi(z)
            values[f"{stage}/rmse_phi"] = pixel_rmse(x, self.decode_factors(f), scale).mean()
            z_cycled = self.phi_inverse(f)
            values[f"{stage}/phi_rec_ratio"] = (z - z_cycled).abs().mean() / z.abs().mean()
            pose_error = (self.split.part(f, "pose") - batch["pose"]).abs().mean()
            values[f"{stage}/pose_mae_deg"] = pose_error * (180.0 / math.pi)
        self.means.log(self, values, batch_size=x.shape[0], on_epoch=True, prog_bar=True)
        unit = to_unit(x)
        return {
            keys.INPUTS: unit,
            keys.TARGET_IMAGES: unit,
            keys.REAL: unit,
            keys.PREDS: to_unit(reconstructions),
            keys.FAKE: to_unit(samples),
        }


def _as_tuple(optimizers: Any) -> tuple:
    return tuple(optimizers) if isinstance(optimizers, (list, tuple)) else (optimizers,)


def _factor_logs(terms: FactorTerms) -> dict[str, Tensor]:
    logs = {
        "phi_total": terms.total,
        "phi_rec": terms.rec,
        "phi_task": terms.task,
        "phi_cyc": terms.cyc,
        "phi_aug": terms.aug,
    }
    return logs | {f"phi_{name}": value for name, value in terms.per_factor.items()}


def _mean_probability(logits: Tensor) -> Tensor:
    return torch.sigmoid(logits.detach().float()).mean()
