"""Multiple-exemplar face hallucination's LightningModule: PWAVE training, PSNR / SSIM evaluation.

Thesis ch. 6 (spec ``shared/specs/hallucination.md`` sections 4, 5, 6). Per training batch of
``CelebAExemplarDataModule`` (``image_lr`` (B, 3, H, H), ``image_hr`` (B, 3, HR, HR) and
``exemplars`` (B, m, 3, HR, HR), all in [-1, 1]; m = 0 allowed), three updates in this order, each
by ``components.adversarial_update.network_update`` (only the optimizer's own networks change):

1. G_S (``small``): L_c^s + lambda_small_p L_p^s (Eqs. 6.2, 6.4), with I'_LR = G_S(I_LR) and
   I^d_HR = I_HR bicubic-antialias downsampled to 2 H_LR: L_c^s = |I'_LR - I^d_HR|_1,
   L_p^s = LPIPS-VGG(I'_LR, I^d_HR);
2. the critic (when ``lambda_adv > 0``; none is built otherwise, the "w/o discriminator"
   variant): WGAN-GP (Eq. 2.8) on the detached I_SR of the generator as G_S left it,
   L_D = E[D(I_SR)] - E[D(I_HR)] + lambda_gp GP (+ drift E[D(I_HR)^2] when ``drift > 0``);
3. the main update of ISR + E_Ex (lr) and WNN-1 + WNN-2 (wnn_lr, a second parameter group of the
   same Adam; no such group with ``fusion="average"``) on L_c + lambda_p L_p + lambda_adv L_adv
   (Eqs. 6.1, 6.3, 6.6) through the just-updated, frozen critic: L_c = |I_SR - I_HR|_1,
   L_p = LPIPS-VGG(I_SR, I_HR), L_adv = -E[D(I_SR)]. WNN-2 reads I'_LR detached, so G_S is
   reached by step 1 only. With m = 0 E_Ex and the WNNs take no part (and are not changed).

Phi_ID, the identity-feature term of L_p and L_p^s (Eq. 6.3): with ``id_net="celeba_attr"`` the
mean squared difference of a frozen CelebA attribute classifier's penultimate features
(``identity_features``; the spec's substitute), added to the LPIPS term and logged with it as
``perceptual`` / ``perceptual_s``; with ``id_net="none"`` L_p is the LPIPS term alone. LPIPS-VGG
is frozen (eval mode, no gradients) and read from the weights manifest's ``vgg16`` file
(``perceptual_weights``); random trunks only with ``random_trunks=True`` (tests). A perceptual
term of weight 0 is neither computed nor logged (the "L1 only" variant: ``lambda_p=0,
lambda_adv=0``; with ``lambda_small_p=0`` too, LPIPS never runs, which the CPU-budget twin runs
use).

Optimizers (Adam, ``betas``, constant lr), ``self.optimizers()`` in this order: main (ISR + E_Ex
at ``lr``, WNNs at ``wnn_lr``), small (G_S at ``lr``), then the critic's (``critic_lr``) when
built. Lightning's ``global_step`` counts optimizer steps: three per iteration (two without a
critic).

Logged: ``train/<term>`` for every term (``content_s``, ``perceptual_s``, ``loss_small``;
``critic_wgan``, ``gp``, ``drift`` (with ``drift > 0``), ``loss_critic``; ``content``,
``perceptual`` (with ``lambda_p > 0``), ``adv`` (with a critic), ``loss_main``; ``perceptual_s``
only with ``lambda_small_p > 0``) and ``train/w_entropy`` (the mean entropy
of W over both scales), this rank's batch value per step and exact epoch means. Evaluation,
exact epoch means over every item of every rank (``EpochMeans``): ``{val,test}/psnr`` and
``ssim`` of I_SR against I_HR, and ``psnr_bicubic``, ``ssim_bicubic`` of the bicubic upsample
``interpolate(I_LR, scale_factor=scale, mode="bicubic", align_corners=False)``; all on RGB in
[0, 1] clamped, per image (PSNR = 10 log10(1 / MSE) of each image's own MSE, never the pooled
MSE; SSIM gaussian 11 / 1.5, ``callbacks.image_quality``), then averaged. The evaluation steps
return ``INPUTS`` (the bicubic upsample), ``PREDS`` (I_SR) and ``TARGET_IMAGES`` (I_HR) in
[0, 1] for panels.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import Tensor, nn
from torch.optim import Adam, Optimizer

from callbacks import keys
from callbacks.image_quality.psnr import psnr
from callbacks.image_quality.ssim import ssim
from datamodules.exemplar_sets import downsample
from lightning_modules.components.adversarial_losses import (
    drift_penalty,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from lightning_modules.components.adversarial_update import network_update
from lightning_modules.components.config_checks import check_loss_weights, check_trunk_choice
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.frozen import FrozenSubmodules, freeze
from lightning_modules.components.lpips import LPIPS
from lightning_modules.components.manual_ddp import RankZeroBuffersAtEvaluation
from lightning_modules.exemplar_sr.critic import ExemplarSRCritic
from lightning_modules.exemplar_sr.generator import ExemplarSRGenerator
from lightning_modules.exemplar_sr.identity_features import load_identity_features
from lightning_modules.exemplar_sr.pwave import Fusion

__all__ = ["ExemplarSRModule"]

#: Up-sample blocks M1 of each scale factor (spec section 3).
NUM_UP_BLOCKS = {8: 3, 16: 4}
SMALL_TERMS = ("content_s", "perceptual_s", "loss_small")
CRITIC_TERMS = ("critic_wgan", "gp", "drift", "loss_critic")
MAIN_TERMS = ("content", "perceptual", "adv", "loss_main")
TRAIN_LOGS = (*SMALL_TERMS, *CRITIC_TERMS, *MAIN_TERMS, "w_entropy")
EVAL_LOGS = ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")


class ExemplarSRModule(FrozenSubmodules, RankZeroBuffersAtEvaluation, LightningModule):
    """The generator (``generator``: ``ExemplarSRGenerator``), the critic (``critic``, None
    without the adversarial term) and the frozen LPIPS-VGG (``lpips``).

    Args:
        scale: 8 (M1 = 3; 16 px inputs for 128 px faces) or 16 (M1 = 4; 8 px inputs).
        image_size: HR, the side of I_HR and I_SR (the critic's input; 128 for CelebA).
        num_res_blocks: M2, residual blocks of the ISR trunk [paper: 1].
        isr_widths: Widths of the ISR up blocks (the first is also the trunk's).
        encoder_widths: Widths of E_Ex's down stages.
        encoder_stem_channels: Width of E_Ex's stem.
        feature_channels: K, channels of the exemplar and fused features.
        wnn_channels: Hidden width of WNN-1 and WNN-2.
        small_channels: Hidden width of G_S.
        fusion: ``"pwave"`` (learned pixel weights) or ``"average"`` (W = 1/m; no WNNs).
        bicubic_skip: I_SR = the trunk's output + the bicubic upsample of I_LR (the trunk learns
            the residual). Not the thesis's (False); the CPU-budget twin runs use it.
        critic_widths: Widths of the critic's blocks.
        critic_group_size: The critic's minibatch-stddev group (the batch must be a multiple of
            it, or smaller).
        equalized_lr: Equalized learning rate in every network.
        lambda_p: lambda_1, weight of L_p.
        lambda_adv: lambda_2, weight of L_adv; 0 builds no critic ("w/o discriminator").
        lambda_small_p: lambda_3, weight of L_p^s.
        lambda_gp: Weight of the critic's gradient penalty.
        drift: Weight of the critic's drift penalty E[D(I_HR)^2] (0: off).
        lr: Adam learning rate of ISR + E_Ex and of G_S.
        wnn_lr: Adam learning rate of WNN-1 + WNN-2 (a parameter group of the main Adam).
        critic_lr: Adam learning rate of the critic.
        betas: Adam betas of every optimizer.
        perceptual_weights: torchvision's ImageNet VGG16 file of LPIPS's trunk: its manifest key
            (``vgg16``) or a path; None only with ``random_trunks``.
        random_trunks: A random LPIPS trunk (tests only): requires ``perceptual_weights=None``, so
            a missing file is never silently replaced.
        id_net: Phi_ID of L_p: ``"none"`` (L_p is the LPIPS term alone) or ``"celeba_attr"``
            (the spec's substitute, read from ``id_weights``).
        id_weights: With ``id_net="celeba_attr"``: the checkpoint of the
            ``exemplar_sr/celeba_attr_phi_id`` run (a missing file is an error that says so).
    """

    evaluation_outputs = (keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES)
    frozen = ("lpips",)

    def __init__(
        self,
        scale: Literal[8, 16] = 8,
        image_size: int = 128,
        num_res_blocks: int = 1,
        isr_widths: Sequence[int] = (256, 128, 64, 32),
        encoder_widths: Sequence[int] = (64, 128, 128, 128),
        encoder_stem_channels: int = 32,
        feature_channels: int = 128,
        wnn_channels: int = 64,
        small_channels: int = 64,
        fusion: Fusion = "pwave",
        bicubic_skip: bool = False,
        critic_widths: Sequence[int] = (64, 128, 256, 512, 512),
        critic_group_size: int = 4,
        equalized_lr: bool = True,
        lambda_p: float = 1.0,
        lambda_adv: float = 1e-3,
        lambda_small_p: float = 1.0,
        lambda_gp: float = 10.0,
        drift: float = 0.0,
        lr: float = 3e-3,
        wnn_lr: float = 1e-4,
        critic_lr: float = 3e-3,
        betas: tuple[float, float] = (0.0, 0.99),
        perceptual_weights: str | None = "vgg16",
        random_trunks: bool = False,
        id_net: Literal["none", "celeba_attr"] = "none",
        id_weights: str | None = None,
    ) -> None:
        super().__init__()
        if scale not in NUM_UP_BLOCKS:
            raise ValueError(f"ExemplarSRModule: scale must be 8 or 16, got {scale}")
        if image_size % scale:
            raise ValueError(
                f"ExemplarSRModule: image_size {image_size} is not a multiple of x{scale}"
            )
        weights = {
            "lambda_p": lambda_p,
            "lambda_adv": lambda_adv,
            "lambda_small_p": lambda_small_p,
            "lambda_gp": lambda_gp,
            "drift": drift,
        }
        check_loss_weights("ExemplarSRModule", weights)
        if id_net not in ("none", "celeba_attr") or (id_net == "none" and id_weights):
            raise ValueError(
                "ExemplarSRModule: id_net must be 'none' or 'celeba_attr', and id_weights is "
                f"read only with 'celeba_attr'; got {id_net=}, {id_weights=}"
            )
        check_trunk_choice("ExemplarSRModule", perceptual_weights, random_trunks)
        self.save_hyperparameters()
        self.automatic_optimization = False
        # the generator's arguments are this module's of the same names, and M1 from the scale
        names = inspect.signature(ExemplarSRGenerator).parameters.keys() & self.hparams.keys()
        self.generator = ExemplarSRGenerator(
            num_up_blocks=NUM_UP_BLOCKS[scale], **{name: self.hparams[name] for name in names}
        )
        self.critic: ExemplarSRCritic | None = None
        if lambda_adv > 0:
            self.critic = ExemplarSRCritic(
                image_size, critic_widths, critic_group_size, equalized_lr
            )
        lpips = LPIPS("vgg", trunk_weights=perceptual_weights, random_trunk=random_trunks)
        self.lpips = freeze(lpips)
        self.identity = load_identity_features(id_weights) if id_net == "celeba_attr" else None
        self.means = EpochMeans(
            [f"train/{name}" for name in TRAIN_LOGS]
            + [f"{stage}/{name}" for stage in ("val", "test") for name in EVAL_LOGS]
        )

    # --- inference -------------------------------------------------------------------------------

    @torch.no_grad()
    def hallucinate(
        self, lr: Tensor, exemplars: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """(I_SR (B, 3, HR, HR) in [-1, 1], W at H_LR and 2 H_LR (B, m, 1, h, h)) of ``lr``
        (B, 3, H, H) guided by any m >= 0 ``exemplars`` (B, m, 3, HR, HR); swap the exemplars to
        edit (spec section 5)."""
        sr, aux = self.generator(lr, exemplars)
        return sr, aux["weights"]

    def bicubic(self, lr: Tensor) -> Tensor:
        """The bicubic baseline: ``lr`` upsampled x scale (not clamped)."""
        return F.interpolate(
            lr, scale_factor=self.hparams.scale, mode="bicubic", align_corners=False
        )

    # --- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Refuse data of another image or input size, or another scale than [-1, 1]."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            hp = self.hparams
            expected = {"hr_size": hp.image_size, "low_size": hp.image_size // hp.scale}
            if hasattr(datamodule, "normalize"):
                expected["normalize"] = "signed"
            check_datamodule(self, expected)

    # --- steps -----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        optimizers = self.optimizers()
        opt_main, opt_small = optimizers[0], optimizers[1]
        lr, hr, exemplars = batch["image_lr"], batch["image_hr"], batch["exemplars"]
        logs = self._update_small(opt_small, lr, hr)
        sr, aux = self.generator(lr, exemplars)  # with its graph; the main update's
        if self.critic is not None:
            logs |= self._update_critic(optimizers[2], hr, sr)
        logs |= self._update_main(opt_main, hr, sr, exemplars.size(1))
        logs["w_entropy"] = aux["weight_entropy"]
        values = {f"train/{name}": value.detach() for name, value in logs.items()}
        self.means.log(self, values, batch_size=lr.shape[0], on_step=True, on_epoch=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> list[Optimizer]:
        """Adam for ISR + E_Ex (lr) and the WNNs (wnn_lr), for G_S, then for the critic."""
        hp = self.hparams
        groups = self.generator.parameter_groups()
        main = [{"params": groups["main"], "lr": hp.lr}]
        if groups["wnn"]:  # none with fusion="average"
            main.append({"params": groups["wnn"], "lr": hp.wnn_lr})
        betas = tuple(hp.betas)
        optimizers = [Adam(main, betas=betas), Adam(groups["small"], lr=hp.lr, betas=betas)]
        if self.critic is not None:
            optimizers.append(Adam(self.critic.parameters(), lr=hp.critic_lr, betas=betas))
        return optimizers

    # --- training --------------------------------------------------------------------------------

    def _update_small(self, optimizer: Optimizer, lr: Tensor, hr: Tensor) -> dict[str, Tensor]:
        """Step 1: G_S on L_c^s + lambda_3 L_p^s against I_HR downsampled to 2 H_LR."""
        target = _signed(downsample(_unit(hr), 2 * lr.shape[-1]))
        terms: dict[str, Tensor] = {}

        def loss() -> Tensor:
            small = self.generator.small_generator(lr)
            terms["content_s"] = (small - target).abs().mean()
            weight = self.hparams.lambda_small_p
            total = terms["content_s"]
            if weight > 0:  # else not computed (an LPIPS pass) nor logged
                terms["perceptual_s"] = self._perceptual(small, target)
                total = total + weight * terms["perceptual_s"]
            return total

        terms["loss_small"] = network_update(self, optimizer, loss)
        return terms

    def _update_critic(self, optimizer: Optimizer, hr: Tensor, sr: Tensor) -> dict[str, Tensor]:
        """Step 2: WGAN-GP on I_HR and the detached I_SR."""
        hp, terms = self.hparams, {}

        def loss(fake: Tensor) -> Tensor:
            real_scores = self.critic(hr)
            terms["critic_wgan"] = wgan_critic_loss(real_scores, self.critic(fake))
            terms["gp"] = gradient_penalty(self.critic, hr, fake)
            total = terms["critic_wgan"] + hp.lambda_gp * terms["gp"]
            if hp.drift > 0:
                terms["drift"] = drift_penalty(real_scores)
                total = total + hp.drift * terms["drift"]
            return total

        terms["loss_critic"] = network_update(self, optimizer, loss, sr)
        return terms

    def _update_main(
        self, optimizer: Optimizer, hr: Tensor, sr: Tensor, num_exemplars: int
    ) -> dict[str, Tensor]:
        """Step 3: ISR, E_Ex and the WNNs on L_c + lambda_1 L_p + lambda_2 L_adv."""
        hp, terms = self.hparams, {}

        def loss() -> Tensor:
            terms["content"] = total = (sr - hr).abs().mean()
            if hp.lambda_p > 0:  # else not computed nor logged
                terms["perceptual"] = self._perceptual(sr, hr)
                total = total + hp.lambda_p * terms["perceptual"]
            if self.critic is not None:
                terms["adv"] = wgan_generator_loss(self.critic(sr))
                total = total + hp.lambda_adv * terms["adv"]
            return total

        # without exemplars E_Ex and the WNNs get no gradient: leave them out of the update
        g = self.generator
        idle = [*g.encoder.parameters(), *g.pwave.parameters()] if num_exemplars == 0 else []
        with _without_gradients(idle):
            terms["loss_main"] = network_update(self, optimizer, loss)
        return terms

    def _perceptual(self, images: Tensor, target: Tensor) -> Tensor:
        """LPIPS-VGG's batch mean, + Phi_ID's feature MSE with ``id_net="celeba_attr"``."""
        term = self.lpips(images, target).mean()
        if self.identity is not None:
            term = term + self.identity.distance(images, target)
        return term

    # --- evaluation ------------------------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        """Per-image PSNR and SSIM of I_SR and of the bicubic baseline; the images for panels."""
        lr, hr = batch["image_lr"], batch["image_hr"]
        sr, _ = self.hallucinate(lr, batch["exemplars"])
        sr, hr, bicubic = _unit(sr), _unit(hr), _unit(self.bicubic(lr))
        values = {
            "psnr": psnr(sr, hr, data_range=1.0).mean(),
            "ssim": ssim(sr, hr, data_range=1.0).mean(),
            "psnr_bicubic": psnr(bicubic, hr, data_range=1.0).mean(),
            "ssim_bicubic": ssim(bicubic, hr, data_range=1.0).mean(),
        }
        logs = {f"{stage}/{name}": value for name, value in values.items()}
        self.means.log(self, logs, batch_size=lr.shape[0], on_epoch=True)
        return {keys.INPUTS: bicubic, keys.PREDS: sr, keys.TARGET_IMAGES: hr}


@contextmanager
def _without_gradients(params: list[nn.Parameter]) -> Iterator[None]:
    """``requires_grad=False`` on ``params`` inside the block (an update leaves them out)."""
    states = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, state in zip(params, states, strict=True):
            p.requires_grad_(state)


def _unit(images: Tensor) -> Tensor:
    """[-1, 1] images -> [0, 1], clamped (metrics, panels, ``downsample``)."""
    return ((images + 1) / 2).clamp(0, 1)


def _signed(images: Tensor) -> Tensor:
    """[0, 1] images -> [-1, 1]."""
    return images * 2 - 1
