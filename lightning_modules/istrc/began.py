"""ISTRC's BEGAN: the auto-encoding discriminator whose bottleneck h ISTRC maps faces into.

Berthelot et al., "BEGAN: Boundary Equilibrium Generative Adversarial Networks", 2017,
arXiv:1703.10717, as the ISTRC spec (Li & Wang, "Image Semantic Transformation: Faster, Lighter
and Stronger"; spec ``istrc``, Architecture item 2 and "Losses and training") fixes it; ISTRC
itself gives no BEGAN settings. Networks in ``istrc.began_networks``. Per batch of real images x:

- z_D, z_G ~ U[-1, 1]^Nz, drawn from a generator seeded by (seed, step, rank): every process
  draws its own noise (Lightning seeds every rank alike, so the global generator would give all
  ranks the same fakes);
- D step: L_D = L(x) - k_t L(G(z_D)), G(z_D) detached, with L(v) = mean |v - D(v)| (eta = 1);
- G step: L_G = L(G(z_G)), through the D just updated (frozen in this step);
- k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_G))), 0, 1) and M_global = L(x) +
  |gamma L(x) - L(G(z_G))| (``components.began_equilibrium``) on the batch means of L(x) and
  L(G(z_G)) over all processes (one all-reduce of three numbers), so k_t is the same on every
  rank;
- at each training epoch's end, both learning rates are halved when the epoch mean of M_global
  (exact over all steps and ranks) has not improved for ``plateau_patience`` epochs
  (``ReduceLROnPlateau``; the BEGAN paper decays the rate when convergence stalls).

Each player's step is ``components.adversarial_update.network_update`` (the other player frozen,
DDP-safe partial backward). Not in the paper: G's and D's weights start from PyTorch's default
initialisation; training is fixed at one D step then one G step per batch.

Batches: ``image`` float (B, 3, S, S) in [-1, 1], i.e. [0, 1] images normalised with mean = std
= 0.5 (``datamodules.images.NORMALIZATIONS["signed"]``; ``CelebADataModule(normalize="signed")``);
at setup a DataModule that exposes ``image_mean`` / ``image_std`` (every ``SplitDataModule``) must
expose the signed ones, and a batch of another size than ``image_size`` is refused.

Logged: ``train/loss_d``, ``train/loss_g`` (L(G(z_G))), ``train/loss_real`` (L(x)) as this rank's
batch values per step and exact epoch means; ``train/k`` (k_{t+1}, after the step) and
``train/m_global`` (the all-rank M_global); ``{val,test}/l1`` (L(x) of D on the evaluated images)
and ``{val,test}/l1_mean_image`` (the L1 of the mean train image as the prediction, the baseline
of the spec's synthetic assertion 2), exact epoch means.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lightning_modules.components.adversarial_losses import (
    began_discriminator_loss,
    began_reconstruction_loss,
)
from lightning_modules.components.adversarial_update import network_update
from lightning_modules.components.began_equilibrium import BEGANEquilibrium
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.manual_ddp import broadcast_buffers
from lightning_modules.components.mean_image import train_mean_image
from lightning_modules.istrc.began_networks import BEGANDecoder, BEGANDiscriminator

__all__ = ["BEGAN"]

TRAIN_LOGS = ("loss_d", "loss_g", "loss_real", "k", "m_global")
EVAL_LOGS = ("l1", "l1_mean_image")
#: What the networks are trained on: [0, 1] images minus 0.5, over 0.5 (per channel).
SIGNED = {"image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5)}


class BEGAN(LightningModule):
    """BEGAN with the equilibrium control k_t: G (``generator``) and D (``discriminator``).

    ``self.optimizers()`` is (G's Adam, D's Adam); ``self.lr_schedulers()`` their plateau
    schedulers in the same order. ``discriminator.encode`` / ``decode`` are ISTRC's D_enc and
    D_dec.

    Args:
        image_size: Side S of the images, 8 * 2^d (64; 32 at the spec's test scale).
        filters: n, the width of the networks (128; 16 at test scale).
        code_size: Nh = Nz, the size of D's bottleneck h and of G's input z (64; 16).
        gamma: Diversity ratio gamma, the target of L(G(z)) / L(x) (0.5).
        lambda_k: Gain lambda_k of the k_t update (0.001).
        k_init: k_0 (0).
        lr: Adam learning rate of G and D (1e-4).
        betas: Their Adam betas ((0.5, 0.999)).
        plateau_patience: Epochs without a lower epoch M_global before the rates are cut (1).
        plateau_factor: Factor of each cut (0.5: halved).
        seed: Seed of the training noise (with the step and the rank).
    """

    def __init__(
        self,
        image_size: int = 64,
        filters: int = 128,
        code_size: int = 64,
        gamma: float = 0.5,
        lambda_k: float = 0.001,
        k_init: float = 0.0,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        plateau_patience: int = 1,
        plateau_factor: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = BEGANDecoder(image_size, filters, code_size)
        self.discriminator = BEGANDiscriminator(image_size, filters, code_size)
        self.equilibrium = BEGANEquilibrium(gamma, lambda_k, k_init)
        self.register_buffer("mean_image", torch.zeros(3, image_size, image_size))
        self.register_buffer("mean_image_count", torch.zeros((), dtype=torch.long))
        self.means = EpochMeans(
            [f"train/{name}" for name in TRAIN_LOGS]
            + [f"{stage}/{name}" for stage in ("val", "test") for name in EVAL_LOGS]
        )

    # --- inference -------------------------------------------------------------------------------

    def forward(self, z: Tensor) -> Tensor:
        """G(z): (B, code_size) -> images (B, 3, S, S), on the [-1, 1] scale (unclamped)."""
        return self.generator(z)

    def noise(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` codes z ~ U[-1, 1]^Nz on the module's device (``generator`` on it too)."""
        z = torch.rand(count, self.hparams.code_size, device=self.device, generator=generator)
        return z * 2 - 1

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """G(z) of ``count`` uniform codes (seeded by ``generator``), without gradients."""
        return self.generator(self.noise(count, generator))

    # --- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the data's normalisation; compute the mean train image once (DDP-exact)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        check_datamodule(self, {k: v for k, v in SIGNED.items() if hasattr(datamodule, k)})
        if stage != "predict" and self.mean_image_count == 0:
            mean, count = train_mean_image(self)
            self._check_size(mean.shape)
            self.mean_image.copy_(mean.to(self.mean_image))
            self.mean_image_count.fill_(count)

    # --- steps -----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = self._images(batch)
        opt_g, opt_d = self.optimizers()
        z_d, z_g = self._training_noise(x.shape[0])
        with torch.no_grad():
            fake_d = self.generator(z_d)
        logs: dict[str, Tensor] = {}

        def d_loss(fake: Tensor) -> Tensor:
            logs["loss_real"] = loss_real = self._reconstruction_loss(x)
            loss_fake = self._reconstruction_loss(fake)
            return began_discriminator_loss(loss_real, loss_fake, self.equilibrium.k)

        def g_loss() -> Tensor:
            return self._reconstruction_loss(self.generator(z_g))

        logs["loss_d"] = network_update(self, opt_d, d_loss, fake_d)
        logs["loss_g"] = network_update(self, opt_g, g_loss)
        loss_real, loss_fake = self._all_rank_means(logs["loss_real"], logs["loss_g"], x.shape[0])
        logs["m_global"] = self.equilibrium.update(loss_real, loss_fake)
        logs["k"] = self.equilibrium.k
        values = {f"train/{name}": value.detach() for name, value in logs.items()}
        self.means.log(self, values, batch_size=x.shape[0], on_step=True, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        """Step both plateau schedulers on the epoch mean of M_global (the same on every rank)."""
        m_global = float(self.means["train/m_global"].compute())
        for scheduler in self.lr_schedulers():
            scheduler.step(m_global)

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation()

    def on_test_epoch_start(self) -> None:
        self._start_evaluation()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> tuple[list[Optimizer], list[ReduceLROnPlateau]]:
        """Adam for G, then for D; each with a ``ReduceLROnPlateau`` (min) that
        ``on_train_epoch_end`` steps (manual optimization: Lightning steps none)."""
        hp = self.hparams
        settings = {"lr": hp.lr, "betas": tuple(hp.betas)}
        optimizers = [
            Adam(self.generator.parameters(), **settings),
            Adam(self.discriminator.parameters(), **settings),
        ]
        schedulers = [
            ReduceLROnPlateau(
                opt, mode="min", factor=hp.plateau_factor, patience=hp.plateau_patience
            )
            for opt in optimizers
        ]
        return optimizers, schedulers

    # --- helpers ---------------------------------------------------------------------------------

    def _images(self, batch: dict[str, Any]) -> Tensor:
        """The batch's ``image`` (B, 3, S, S), refused at another size."""
        x = batch["image"]
        self._check_size(x.shape[1:])
        return x

    def _check_size(self, shape: torch.Size) -> None:
        """Refuse images whose (C, H, W) is not (3, S, S)."""
        size = self.hparams.image_size
        if tuple(shape) != (3, size, size):
            raise ValueError(
                f"BEGAN(image_size={size}) takes images (B, 3, {size}, {size}), got images "
                f"(3, H, W) = {tuple(shape)}"
            )

    def _reconstruction_loss(self, images: Tensor) -> Tensor:
        """L(v) = mean |v - D(v)|."""
        return began_reconstruction_loss(images, self.discriminator(images))

    def _training_noise(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """z_D and z_G (B, Nz) of this step on this rank: a draw no other step or rank makes."""
        trainer = self.trainer
        step = self.global_step * trainer.world_size + trainer.global_rank
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.hparams.seed * 1_000_003 + step)
        z_d, z_g = self.noise(2 * batch_size, generator).chunk(2)
        return z_d, z_g

    def _all_rank_means(
        self, loss_real: Tensor, loss_fake: Tensor, batch_size: int
    ) -> tuple[Tensor, Tensor]:
        """L(x) and L(G(z_G)) as means over every rank's images (float64, equal on all ranks):
        each rank's batch means weighted by its batch size, summed in one all-reduce."""
        weighted = torch.stack([loss_real.detach(), loss_fake.detach()]).double() * batch_size
        count = torch.tensor([batch_size], dtype=torch.float64, device=weighted.device)
        total = self.trainer.strategy.reduce(torch.cat([weighted, count]), reduce_op="sum")
        return total[0] / total[2], total[1] / total[2]

    def _start_evaluation(self) -> None:
        broadcast_buffers(self)  # under DDP every process evaluates the checkpoint's buffers
        if self.mean_image_count == 0:
            raise RuntimeError(
                "BEGAN: no mean train image; evaluate through a DataModule with a training split "
                "(its mean image is the baseline of {val,test}/l1_mean_image)"
            )

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        x = self._images(batch)
        values = {
            f"{stage}/l1": self._reconstruction_loss(x),
            f"{stage}/l1_mean_image": began_reconstruction_loss(x, self.mean_image.expand_as(x)),
        }
        self.means.log(self, values, batch_size=x.shape[0], on_epoch=True, prog_bar=True)
