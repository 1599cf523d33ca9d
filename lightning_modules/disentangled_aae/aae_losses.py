"""The adversarial autoencoder's objective (Stage A, the paper's Eqs. 1-5), split by player.

With x an image, x~ = G(E(x)) its reconstruction, z* ~ N(0, I) a prior sample and G(z*) a random
face, D_z and D_x returning logits (sigma = logistic):

    L_rec = E |x - x~|_1 on the 0-255 pixel scale                                     (Eq. 1)
    L_enc = E log D_z(z*) + E log(1 - D_z(E(x)))                                      (Eq. 2)
    L_adv = E log D_x(x) + E log(1 - D_x(x~))                                         (Eq. 3)
    L_gen = E log D_x(x) + E log(1 - D_x(G(z*)))                                      (Eq. 4)
    min_{E,G} max_{D_z,D_x} L_AE = lambda_AE (L_rec + L_adv) + L_enc + w_gen L_gen    (Eq. 5)

with lambda_AE = 0.9 and w_gen = 1 as printed (the spec's decision 5 keeps ``w_gen`` a key).
``reconstruction_loss`` can add a structural term to Eq. 1, as the same authors' later AAE
(3FabRec, Browatzki & Wallraven 2020) does: L_rec = 0.5 L1 + 0.5 w (1 - SSIM(x, x~)), their
w = 60; SSIM is the suite's (window 11, on [0, 1] images). w = 0 is Eq. 1.
Each player minimises its own loss, written with the suite's BCE terms
(``components.adversarial_losses``): the discriminators the negated log-likelihoods,

    D_z:  -log sigma(D_z(z*)) - log(1 - sigma(D_z(E(x))))
    D_x:  lambda_AE [-log sigma(D_x(x)) - log(1 - sigma(D_x(x~)))]
          + w_gen [-log sigma(D_x(x)) - log(1 - sigma(D_x(G(z*))))]

and E, G the reconstruction and the non-saturating forms of their adversarial terms,

    E, G: lambda_AE [L_rec - log sigma(D_x(x~))] - log sigma(D_z(E(x)))
          - w_gen log sigma(D_x(G(z*)))
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from lightning_modules.components.adversarial_losses import (
    bce_discriminator_loss,
    bce_generator_loss,
)
from lightning_modules.components.ssim_loss import ssim_float32

__all__ = [
    "AutoencoderLoss",
    "autoencoder_loss",
    "image_discriminator_loss",
    "latent_discriminator_loss",
    "reconstruction_l1",
    "reconstruction_loss",
]


def reconstruction_l1(
    images: Tensor, reconstructions: Tensor, pixel_scale: float = 255.0
) -> Tensor:
    """L_rec: mean absolute error of images in [-1, 1], on a ``pixel_scale`` range (0-255).

    An image in [-1, 1] spans 2 units, so the error is multiplied by ``pixel_scale / 2``.
    """
    if images.shape != reconstructions.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and reconstructions {tuple(reconstructions.shape)} "
            "must have the same shape"
        )
    return (images - reconstructions).abs().mean() * (pixel_scale / 2)


def reconstruction_loss(
    images: Tensor,
    reconstructions: Tensor,
    pixel_scale: float = 255.0,
    structural_weight: float = 0.0,
) -> Tensor:
    """L_rec of E and G: Eq. 1's L1 (``structural_weight`` 0), else
    ``0.5 L1 + 0.5 structural_weight (1 - SSIM)`` with the mean SSIM of the images' [0, 1] forms.

    Args:
        images: (B, 3, S, S) in [-1, 1], S >= 11 (the SSIM window) when the weight is not 0.
        reconstructions: Same shape.
        pixel_scale: The L1's pixel range (``reconstruction_l1``).
        structural_weight: w >= 0 (3FabRec: 60, with the L1 on the 0-255 scale).
    """
    if structural_weight < 0:
        raise ValueError(f"structural_weight must be >= 0, got {structural_weight}")
    l1 = reconstruction_l1(images, reconstructions, pixel_scale)
    if structural_weight == 0:
        return l1
    similarity = ssim_float32((reconstructions + 1) / 2, (images + 1) / 2).mean()
    return 0.5 * l1 + 0.5 * structural_weight * (1 - similarity)


def latent_discriminator_loss(prior_logits: Tensor, encoded_logits: Tensor) -> Tensor:
    """D_z's loss: prior samples z* are real, encodings E(x) (detached) are fake."""
    return bce_discriminator_loss(prior_logits, encoded_logits)


def image_discriminator_loss(
    real_logits: Tensor,
    reconstruction_logits: Tensor,
    sample_logits: Tensor,
    lambda_ae: float = 0.9,
    w_gen: float = 1.0,
) -> Tensor:
    """D_x's loss: real images against reconstructions (weight lambda_AE, Eq. 3) and against
    random faces G(z*) (weight w_gen, Eq. 4); the fakes come detached."""
    return lambda_ae * bce_discriminator_loss(
        real_logits, reconstruction_logits
    ) + w_gen * bce_discriminator_loss(real_logits, sample_logits)


class AutoencoderLoss(NamedTuple):
    """E and G's loss and its terms (each a scalar)."""

    total: Tensor
    rec: Tensor  # L_rec, 0-255 scale
    adv: Tensor  # -log sigma(D_x(x~))
    enc: Tensor  # -log sigma(D_z(E(x)))
    gen: Tensor  # -log sigma(D_x(G(z*)))


def autoencoder_loss(
    rec: Tensor,
    reconstruction_logits: Tensor,
    encoded_logits: Tensor,
    sample_logits: Tensor,
    lambda_ae: float = 0.9,
    w_gen: float = 1.0,
) -> AutoencoderLoss:
    """E and G's loss: lambda_AE (L_rec + L_adv) + L_enc + w_gen L_gen in the non-saturating form.

    Args:
        rec: L_rec (``reconstruction_loss``).
        reconstruction_logits: D_x(x~), with the graph through G and E.
        encoded_logits: D_z(E(x)), with the graph through E.
        sample_logits: D_x(G(z*)), with the graph through G.
        lambda_ae: lambda_AE (0.9).
        w_gen: Weight of the random-face term (1 as printed).
    """
    adv = bce_generator_loss(reconstruction_logits)
    enc = bce_generator_loss(encoded_logits)
    gen = bce_generator_loss(sample_logits)
    total = lambda_ae * (rec + adv) + enc + w_gen * gen
    return AutoencoderLoss(total, rec, adv, enc, gen)
