"""UST's LightningModule: unpaired try-on / take-off training and its matched-pair evaluation.

Thesis ch. 4 (spec ``shared/specs/ust.md`` sections 3, 4, 6). Per training batch of unpaired
persons (I_A, m_A, C_A) and catalog items I_B (``datamodules.viton.VitonDataModule``):

- the streams: (z_A^C, z_A^S) = encode_a(I_A, m_A), (z_B^C, z_B^S) = encode_b(I_B); I_AA, I_BB
  (self), I_AB = G_B(z_A) (take-off), I_BA = G_A(z_B; m_A, C_A) (try-on into I_A's context), with
  the source style (no sampled styles);
- D step (first, MUNIT's order): LSGAN on D_B (real I_B, fake I_AB) and D_A (real [I_A, m_A],
  fake [I_BA, m_A]), the fakes detached; only D_A and D_B change;
- G step, through the just-updated, frozen discriminators; only E_A^C, E_B^C, E^S + MLP, G_A, G_B
  change. Eq. 4.8: L = lambda_GAN (L_GAN^A + L_GAN^B) + lambda_CC (L_CC^A + L_CC^B)
  + lambda_SeR (L_SeR^A + L_SeR^B) + lambda_LaR (L_LaR^A + L_LaR^B) + lambda_P (L_P^A + L_P^B)
  + lambda_Sym L_Sym, with (all |.|_1 mean-reduced)

  - L_LaR^A = |E_B^C(I_AB) - z_A^C| + |E^S_B(I_AB) - z_A^S|,
    L_LaR^B = |E_A^C(I_BA, m_A) - z_B^C| + |E^S_A(I_BA^m) - z_B^S| (Eq. 4.2; without a shared
    style encoder the target domain's);
  - L_SeR^A = |I_AA - I_A|, L_SeR^B = |I_BB - I_B| (Eq. 4.3);
  - L_GAN^A = 1/2 E[(D_A(I_BA, m_A) - 1)^2], L_GAN^B = 1/2 E[(D_B(I_AB) - 1)^2], mean over scales;
  - L_CC^A = |I_ABA - I_A|, I_ABA = G_A(encode_b(I_AB); m_A, C_A); L_CC^B = |I_BAB - I_B|,
    I_BAB = G_B(encode_a(I_BA, m_A)) (Eq. 4.5);
  - L_P^A = LPIPS(I_AA, I_A) + LPIPS(I_AB, ROI(I_A)) + lambda_G Gram(I_AB, ROI(I_A)),
    L_P^B = LPIPS(I_BB, I_B) + LPIPS(ROI(I_BA), I_B) + lambda_G Gram(ROI(I_BA), I_B) (Eq. 4.6 and
    the spec's mirror), ROI as ``ust.roi`` on the catalog's size, Gram the sum over the five
    VGG16 layers of mean |G_l(x) - G_l(y)| (``ust.gram``);
  - L_Sym on I_AB only (Eq. 4.7, ``ust.symmetry``).

Optimizers: Adam(betas, weight decay) for the generator side and for D_A + D_B, each with a StepLR
(x ``lr_gamma`` every ``lr_step`` iterations) stepped after every training batch. Lightning's
``global_step`` (and ``trainer.max_steps``) counts optimizer steps: two per iteration.
LPIPS-VGG (the evaluation metric, and the loss's Phi by default) and the Gram VGG16 are frozen
(eval mode, no gradients), read from the weights manifest's ``vgg16`` file
(``perceptual_weights``); ``perceptual_net="alex"`` makes the loss's Phi LPIPS-Alex (the
manifest's ``alexnet`` file; far cheaper at 64 x 48, for CPU runs of the twin), the metric
staying LPIPS-VGG. Random trunks only with ``random_trunks=True`` (tests, CPU twin runs).

Logged: ``train/<term>`` for every term above (``gan_a``, ``gan_b``, ``cc_a``, ``cc_b``, ``ser_a``,
``ser_b``, ``lar_a``, ``lar_b``, ``p_a``, ``p_b`` and their parts ``lpips_a``, ``gram_a``,
``lpips_b``, ``gram_b``, ``sym``), the total ``loss_g``, and ``loss_d`` = ``d_a`` + ``d_b``: this
rank's batch value per step and exact epoch means (``EpochMeans``). Evaluation on matched pairs
(spec section 6), exact epoch means over every item of every rank: ``{val,test}/takeoff_ssim``
and ``takeoff_lpips`` (take_off(I_A, m_A) against I_B, full frame), ``tryon_roi_ssim`` and
``tryon_roi_lpips`` (ROI(try_on(I_B, m_A, C_A)) against ROI(I_A); not logged without Fit-in,
where they are N/A); with the twin's cross pairs (``test_cross``, the second test loader)
``test/cross_tryon_ssim`` and ``cross_tryon_lpips`` (item j tried on person i against the true
try-on, full frame). SSIM (gaussian 11 / 1.5, data range 1 on [0, 1],
``callbacks.image_quality.ssim``) and LPIPS-VGG, both x100. The evaluation steps return the
take-off as ``INPUTS`` (I_A) / ``PREDS`` (I_AB) / ``TARGET_IMAGES`` (I_B) in [0, 1] for panels.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
from lightning import LightningModule
from torch import Tensor
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import StepLR

from callbacks import keys
from callbacks.image_quality.ssim import ssim
from lightning_modules.components.adversarial_losses import (
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from lightning_modules.components.adversarial_update import network_update
from lightning_modules.components.config_checks import check_loss_weights, check_trunk_choice
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.frozen import FrozenSubmodules, freeze
from lightning_modules.components.lpips import LPIPS
from lightning_modules.components.manual_ddp import RankZeroBuffersAtEvaluation
from lightning_modules.ust.discriminator import MultiScaleDiscriminator
from lightning_modules.ust.generator import USTGenerator
from lightning_modules.ust.gram import GramVGG16
from lightning_modules.ust.roi import roi
from lightning_modules.ust.symmetry import symmetry_loss

__all__ = ["USTModule"]

#: The terms of Eq. 4.8 (and the perceptual terms' parts), logged as ``train/<name>``.
G_TERMS = ("gan_a", "gan_b", "cc_a", "cc_b", "ser_a", "ser_b", "lar_a", "lar_b", "p_a", "p_b")
G_PARTS = ("lpips_a", "gram_a", "lpips_b", "gram_b", "sym")
TRAIN_LOGS = (*G_TERMS, *G_PARTS, "loss_g", "d_a", "d_b", "loss_d")
EVAL_LOGS = ("takeoff_ssim", "takeoff_lpips", "tryon_roi_ssim", "tryon_roi_lpips")
#: On the twin's cross pairs (the test loader's second with ``test_cross``): person i, item j.
CROSS_LOGS = ("cross_tryon_ssim", "cross_tryon_lpips")
#: The images are [0, 1] ones minus 0.5, over 0.5: [-1, 1] (``VitonDataModule``'s).
SIGNED = {"image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5)}


class USTModule(FrozenSubmodules, RankZeroBuffersAtEvaluation, LightningModule):
    """The generator side (``generator``: ``USTGenerator``), D_A and D_B, frozen LPIPS and Gram.

    ``self.optimizers()`` is (generator Adam, discriminator Adam); ``self.lr_schedulers()`` their
    StepLRs in the same order.

    Args:
        base_channels: Width of the content encoders' first block (64).
        num_downsample: Down-sampling blocks of the content encoders (2).
        num_res_blocks: Residual blocks of encoders and decoders (4).
        style_dim: SD, the style code's size (8, 32 or 128).
        style_base_channels: Width of E^S's first conv (64).
        style_num_downsample: Stride-2 convs of E^S (4).
        mlp_channels: Width of the MLP's hidden layers (256).
        mlp_hidden_layers: Hidden layers of the MLP (2).
        fit_in_channels: Width of the Fit-in conv block (64).
        concat_mask: The Fit-in module also reads m_A.
        mask_attention: m_A into G_A and D_A (False: the "W/O mask attention" ablation).
        fit_in: G_A ends with the Fit-in module (False: "W/O Fit-in"; Try-on ROI is then N/A).
        shared_style: One E^S + MLP for both domains (False: "W/O shared S.E.").
        disc_base_channels: Width of each PatchGAN's first conv (64).
        disc_num_layers: Stride-2 convs per PatchGAN (4; 3 at 64 x 48).
        disc_num_scales: Scales of each discriminator (3).
        lambda_gan: Weight of L_GAN^A + L_GAN^B.
        lambda_cc: Weight of the cycle terms.
        lambda_ser: Weight of the self-reconstruction terms.
        lambda_lar: Weight of the latent-reconstruction terms.
        lambda_p: Weight of the perceptual terms (0: the "W/O P. loss" ablation; the terms are
            then still computed and logged, without gradients).
        lambda_gram: lambda_G, weight of the Gram term inside each perceptual term (0: the
            Gram terms are neither computed nor logged).
        lambda_sym: Weight of L_Sym.
        perceptual_net: The LPIPS trunk of the loss's Phi: ``vgg`` (the thesis does not say; the
            spec's choice) or ``alex`` (cheaper; the manifest's ``alexnet`` file).
        lr: Adam learning rate of both optimizers (the thesis's 2e-6).
        betas: Their Adam betas.
        weight_decay: Their (L2) weight decay.
        lr_step: Iterations between two learning-rate cuts.
        lr_gamma: Factor of each cut.
        perceptual_weights: torchvision's ImageNet VGG16 file of LPIPS's and the Gram network's
            trunk: its manifest key (``vgg16``) or a path; None only with ``random_trunks``.
        random_trunks: Random LPIPS and Gram trunks (tests only): requires
            ``perceptual_weights=None``, so a missing file is never silently replaced.
    """

    evaluation_outputs = (keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES)
    frozen = ("lpips", "gram")  # (and loss_lpips when set: LPIPS computes the same in train mode)

    def __init__(
        self,
        base_channels: int = 64,
        num_downsample: int = 2,
        num_res_blocks: int = 4,
        style_dim: int = 8,
        style_base_channels: int = 64,
        style_num_downsample: int = 4,
        mlp_channels: int = 256,
        mlp_hidden_layers: int = 2,
        fit_in_channels: int = 64,
        concat_mask: bool = False,
        mask_attention: bool = True,
        fit_in: bool = True,
        shared_style: bool = True,
        disc_base_channels: int = 64,
        disc_num_layers: int = 4,
        disc_num_scales: int = 3,
        lambda_gan: float = 1.0,
        lambda_cc: float = 10.0,
        lambda_ser: float = 10.0,
        lambda_lar: float = 1.0,
        lambda_p: float = 1.0,
        lambda_gram: float = 10.0,
        lambda_sym: float = 1.0,
        perceptual_net: Literal["vgg", "alex"] = "vgg",
        lr: float = 2e-6,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-4,
        lr_step: int = 100_000,
        lr_gamma: float = 0.5,
        perceptual_weights: str | None = "vgg16",
        random_trunks: bool = False,
    ) -> None:
        super().__init__()
        weights = {
            "lambda_gan": lambda_gan,
            "lambda_cc": lambda_cc,
            "lambda_ser": lambda_ser,
            "lambda_lar": lambda_lar,
            "lambda_p": lambda_p,
            "lambda_gram": lambda_gram,
            "lambda_sym": lambda_sym,
        }
        check_loss_weights("USTModule", weights)
        if perceptual_net not in ("vgg", "alex"):
            raise ValueError(
                f"USTModule: perceptual_net must be vgg or alex, got {perceptual_net!r}"
            )
        if lr_step < 1:
            raise ValueError(f"USTModule: lr_step must be >= 1 iteration, got {lr_step}")
        check_trunk_choice("USTModule", perceptual_weights, random_trunks)
        self.save_hyperparameters()
        self.automatic_optimization = False
        # the generator's arguments are this module's of the same names (all but image_channels)
        names = inspect.signature(USTGenerator).parameters.keys() & self.hparams.keys()
        self.generator = USTGenerator(**{name: self.hparams[name] for name in names})
        disc = {
            "base_channels": disc_base_channels,
            "num_layers": disc_num_layers,
            "num_scales": disc_num_scales,
        }
        self.discriminator_a = MultiScaleDiscriminator(mask_attention=mask_attention, **disc)
        self.discriminator_b = MultiScaleDiscriminator(**disc)
        lpips = LPIPS("vgg", trunk_weights=perceptual_weights, random_trunk=random_trunks)
        self.lpips = freeze(lpips)  # frozen already; eval mode too, like the Gram network
        self.loss_lpips: LPIPS | None = None  # None: the loss's Phi is self.lpips
        if perceptual_net == "alex":
            alex_weights = None if random_trunks else "alexnet"
            alex = LPIPS("alex", trunk_weights=alex_weights, random_trunk=random_trunks)
            self.loss_lpips = freeze(alex)
        self.gram = GramVGG16(trunk_weights=perceptual_weights, random_trunk=random_trunks)
        self.means = EpochMeans(
            [f"train/{name}" for name in TRAIN_LOGS]
            + [f"{stage}/{name}" for stage in ("val", "test") for name in EVAL_LOGS]
            + [f"test/{name}" for name in CROSS_LOGS]
        )

    # --- inference -------------------------------------------------------------------------------

    def take_off(self, images: Tensor, mask: Tensor) -> Tensor:
        """I_AB: the catalog view (B, 3, H, W) in [-1, 1] of the item persons wear (A -> B)."""
        return self.generator.take_off(images, mask)

    def try_on(self, items: Tensor, mask: Tensor, context: Tensor) -> Tensor:
        """I_BA: catalog items (B, 3, H, W) put on the persons of masks m_A and contexts C_A."""
        return self.generator.try_on(items, mask, context)

    def style_code(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, SD) style codes for retrieval: catalog items, or persons with their m_A (masked)."""
        return self.generator.style_code(images, "b" if mask is None else "a", mask)

    # --- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Refuse data on another scale than [-1, 1] (when the DataModule says which)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            check_datamodule(self, {k: v for k, v in SIGNED.items() if hasattr(datamodule, k)})

    # --- steps -----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        streams = self._translate(batch)
        logs = self._update_discriminators(opt_d, batch, streams)
        logs |= self._update_generator(opt_g, batch, streams)
        for scheduler in self.lr_schedulers():
            scheduler.step()
        values = {f"train/{name}": value.detach() for name, value in logs.items()}
        size = batch["image_a"].shape[0]
        self.means.log(self, values, batch_size=size, on_step=True, on_epoch=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val")

    def test_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """Matched pairs; with ``test_cross`` the twin's cross pairs as ``dataloader_idx`` 1."""
        return self._evaluate(batch, "test") if dataloader_idx == 0 else self._evaluate_cross(batch)

    def configure_optimizers(self) -> tuple[list[Optimizer], list[StepLR]]:
        """Adam for the generator side, then for D_A + D_B, each with a per-iteration StepLR."""
        hp = self.hparams
        settings = {"lr": hp.lr, "betas": tuple(hp.betas), "weight_decay": hp.weight_decay}
        discriminators = [*self.discriminator_a.parameters(), *self.discriminator_b.parameters()]
        optimizers = [
            Adam(self.generator.parameters(), **settings),
            Adam(discriminators, **settings),
        ]
        schedulers = [StepLR(opt, step_size=hp.lr_step, gamma=hp.lr_gamma) for opt in optimizers]
        return optimizers, schedulers

    # --- training --------------------------------------------------------------------------------

    def _translate(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Codes and the four first-pass images, with their graph (the G step reuses them)."""
        g = self.generator
        mask, context = batch["mask_a"], batch["context_a"]
        content_a, style_a = g.encode_a(batch["image_a"], mask)
        content_b, style_b = g.encode_b(batch["image_b"])
        return {
            "content_a": content_a,
            "style_a": style_a,
            "content_b": content_b,
            "style_b": style_b,
            "aa": g.decode_a(content_a, style_a, mask, context),
            "bb": g.decode_b(content_b, style_b),
            "ab": g.decode_b(content_a, style_a),
            "ba": g.decode_a(content_b, style_b, mask, context),
        }

    def _update_discriminators(
        self, optimizer: Optimizer, batch: dict[str, Any], streams: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """LSGAN D step on D_A (real [I_A, m_A], fake [I_BA, m_A]) and D_B (I_B, I_AB)."""
        logs: dict[str, Tensor] = {}
        mask = batch["mask_a"]

        def loss(fake_ab: Tensor, fake_ba: Tensor) -> Tensor:
            d_a, d_b = self.discriminator_a, self.discriminator_b
            logs["d_a"] = lsgan_discriminator_loss(d_a(batch["image_a"], mask), d_a(fake_ba, mask))
            logs["d_b"] = lsgan_discriminator_loss(d_b(batch["image_b"]), d_b(fake_ab))
            return logs["d_a"] + logs["d_b"]

        logs["loss_d"] = network_update(self, optimizer, loss, streams["ab"], streams["ba"])
        return logs

    def _update_generator(
        self, optimizer: Optimizer, batch: dict[str, Any], streams: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """The G step on Eq. 4.8, through the frozen discriminators."""
        terms: dict[str, Tensor] = {}

        def loss() -> Tensor:
            terms.update(self.generator_terms(batch, streams))
            return self.total_loss(terms)

        terms["loss_g"] = network_update(self, optimizer, loss)
        return terms

    def generator_terms(
        self, batch: dict[str, Any], streams: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Every unweighted term of Eq. 4.8 (names of ``G_TERMS``) and the parts of ``G_PARTS``."""
        g, hp = self.generator, self.hparams
        image_a, image_b = batch["image_a"], batch["image_b"]
        mask, context = batch["mask_a"], batch["context_a"]
        ab, ba = streams["ab"], streams["ba"]
        # re-encoded translations: Eq. 4.2's codes and Eq. 4.5's cycles
        content_ab, style_ab = g.encode_b(ab)
        content_ba, style_ba = g.encode_a(ba, mask)  # E^S reads I_BA^m
        aba = g.decode_a(content_ab, style_ab, mask, context)
        bab = g.decode_b(content_ba, style_ba)
        terms = {
            "gan_a": lsgan_generator_loss(self.discriminator_a(ba, mask)),
            "gan_b": lsgan_generator_loss(self.discriminator_b(ab)),
            "cc_a": (aba - image_a).abs().mean(),
            "cc_b": (bab - image_b).abs().mean(),
            "ser_a": (streams["aa"] - image_a).abs().mean(),
            "ser_b": (streams["bb"] - image_b).abs().mean(),
            "lar_a": (content_ab - streams["content_a"]).abs().mean()
            + (style_ab - streams["style_a"]).abs().mean(),
            "lar_b": (content_ba - streams["content_b"]).abs().mean()
            + (style_ba - streams["style_b"]).abs().mean(),
            "sym": symmetry_loss(ab),
        }
        phi = self.lpips if self.loss_lpips is None else self.loss_lpips
        with torch.set_grad_enabled(torch.is_grad_enabled() and hp.lambda_p > 0):
            size = tuple(image_b.shape[-2:])
            roi_a, roi_ba = roi(image_a, mask, size), roi(ba, mask, size)
            terms["lpips_a"] = phi(streams["aa"], image_a).mean() + phi(ab, roi_a).mean()
            terms["lpips_b"] = phi(streams["bb"], image_b).mean() + phi(roi_ba, image_b).mean()
            if hp.lambda_gram > 0:  # else not computed (a VGG16 pass per side) nor logged
                terms["gram_a"] = self.gram.distance(ab, roi_a)
                terms["gram_b"] = self.gram.distance(roi_ba, image_b)
        for side in ("a", "b"):
            terms[f"p_{side}"] = terms[f"lpips_{side}"]
            if hp.lambda_gram > 0:
                terms[f"p_{side}"] = terms[f"p_{side}"] + hp.lambda_gram * terms[f"gram_{side}"]
        return terms

    def total_loss(self, terms: dict[str, Tensor]) -> Tensor:
        """Eq. 4.8: the weighted sum of the terms ``generator_terms`` returns."""
        hp = self.hparams
        pairs = {
            "gan": hp.lambda_gan,
            "cc": hp.lambda_cc,
            "ser": hp.lambda_ser,
            "lar": hp.lambda_lar,
            "p": hp.lambda_p,
        }
        total = hp.lambda_sym * terms["sym"]
        for name, weight in pairs.items():
            if weight:
                total = total + weight * (terms[f"{name}_a"] + terms[f"{name}_b"])
        return total

    # --- evaluation ------------------------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        """Take-off and Try-on ROI SSIM / LPIPS-VGG (x100) of matched pairs; the take-off
        images for panels."""
        image_a, image_b = batch["image_a"], batch["image_b"]
        mask, context = batch["mask_a"], batch["context_a"]
        take_off = self.take_off(image_a, mask)
        values = self._quality(take_off, image_b, "takeoff")
        if self.hparams.fit_in:  # without Fit-in the try-on has no target shape: N/A
            size = tuple(image_b.shape[-2:])
            try_on = roi(self.try_on(image_b, mask, context), mask, size)
            values |= self._quality(try_on, roi(image_a, mask, size), "tryon_roi")
        logs = {f"{stage}/{name}": value for name, value in values.items()}
        self._log_evaluation(logs, image_a.shape[0])
        return {
            keys.INPUTS: _unit(image_a),
            keys.PREDS: _unit(take_off),
            keys.TARGET_IMAGES: _unit(image_b),
        }

    @torch.no_grad()
    def _evaluate_cross(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The twin's cross pairs: item j tried on person i (m_A, C_A of i) against the true
        try-on ``target``, full frame; the try-on images for panels."""
        image_b, target = batch["image_b"], batch["target"]
        try_on = self.try_on(image_b, batch["mask_a"], batch["context_a"])
        values = self._quality(try_on, target, "cross_tryon")
        self._log_evaluation({f"test/{k}": v for k, v in values.items()}, image_b.shape[0])
        return {
            keys.INPUTS: _unit(image_b),
            keys.PREDS: _unit(try_on),
            keys.TARGET_IMAGES: _unit(target),
        }

    def _log_evaluation(self, logs: dict[str, Tensor], batch_size: int) -> None:
        """Exact epoch means; one name per metric whatever the number of test loaders."""
        self.means.log(self, logs, batch_size=batch_size, on_epoch=True, add_dataloader_idx=False)

    def _quality(self, preds: Tensor, target: Tensor, name: str) -> dict[str, Tensor]:
        """Batch means of SSIM (on [0, 1], data range 1) and LPIPS-VGG (on [-1, 1]), x100."""
        return {
            f"{name}_ssim": 100 * ssim(_unit(preds), _unit(target), data_range=1.0).mean(),
            f"{name}_lpips": 100 * self.lpips(preds, target).double().mean(),
        }


def _unit(images: Tensor) -> Tensor:
    """[-1, 1] images -> [0, 1], clamped (metrics and panels)."""
    return ((images + 1) / 2).clamp(0, 1)
