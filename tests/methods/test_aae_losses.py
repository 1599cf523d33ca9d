"""disentangled_aae.aae_losses: Stage A's objective (Eqs. 1-5) per player, against the equations
on hand-made logits and a numpy version of the printed formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from image_quality_reference import skimage_ssim

from lightning_modules.disentangled_aae.aae_losses import (
    autoencoder_loss,
    image_discriminator_loss,
    latent_discriminator_loss,
    reconstruction_l1,
    reconstruction_loss,
)

LOG2 = math.log(2.0)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.log(1.0 / (1.0 + np.exp(-x)))


def test_reconstruction_l1_is_on_the_0_255_scale():
    images = torch.zeros(2, 3, 4, 4)  # pixel value 127.5 on the 0-255 scale
    reconstructions = torch.full((2, 3, 4, 4), 0.5)  # 191.25
    assert reconstruction_l1(images, reconstructions).item() == pytest.approx(63.75)
    # a [-1, 1] image against its negation: |x - (-x)| = 2 |x|, i.e. 255 |x| on the pixel scale
    x = torch.tensor([[[[1.0, -1.0]]]])
    assert reconstruction_l1(x, -x).item() == pytest.approx(255.0)
    assert reconstruction_l1(x, -x, pixel_scale=2.0).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_l1(x, torch.zeros(1, 1, 1, 3))


def test_reconstruction_loss_adds_the_structural_term_by_its_equation():
    """w = 0 is Eq. 1's L1; w > 0 gives 0.5 L1 + 0.5 w (1 - SSIM) with SSIM on [0, 1] images,
    checked against scikit-image's SSIM (the suite's reference)."""
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    recon = (images + 0.3 * torch.randn_like(images)).clamp(-1, 1)
    l1 = reconstruction_l1(images, recon).item()
    assert reconstruction_loss(images, recon).item() == pytest.approx(l1)
    similarity = skimage_ssim((recon + 1) / 2, (images + 1) / 2).mean()
    want = 0.5 * l1 + 0.5 * 60 * (1 - similarity)
    assert reconstruction_loss(images, recon, structural_weight=60).item() == pytest.approx(
        want, rel=1e-5
    )
    # a perfect reconstruction has no structural loss either
    assert reconstruction_loss(images, images, structural_weight=60).item() == pytest.approx(
        0.0, abs=1e-4
    )
    with pytest.raises(ValueError, match="structural_weight must be >= 0"):
        reconstruction_loss(images, recon, structural_weight=-1)


def test_zero_logits_give_log_2_per_term():
    zero = torch.zeros(5)
    # D_z: -log sigma(0) - log(1 - sigma(0)) = 2 log 2
    assert latent_discriminator_loss(zero, zero).item() == pytest.approx(2 * LOG2)
    # D_x: 0.9 * 2 log 2 + 1 * 2 log 2 = 3.8 log 2
    assert image_discriminator_loss(zero, zero, zero).item() == pytest.approx(3.8 * LOG2)
    # E, G: 0.9 (10 + log 2) + log 2 + 1 * log 2 = 9 + 2.9 log 2
    terms = autoencoder_loss(torch.tensor(10.0), zero, zero, zero)
    assert terms.total.item() == pytest.approx(9 + 2.9 * LOG2)
    assert terms.adv.item() == terms.enc.item() == terms.gen.item() == pytest.approx(LOG2)
    assert terms.rec.item() == 10.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("lambda_ae", "w_gen"), [(0.9, 1.0), (0.5, 0.1)])
def test_each_player_loss_is_the_printed_formula(seed, lambda_ae, w_gen):
    g = torch.Generator().manual_seed(seed)
    real, rec, sample, prior, enc = (torch.randn(7, generator=g) * 3 for _ in range(5))
    r, x_rec, x_s, p, e = (t.double().numpy() for t in (real, rec, sample, prior, enc))
    dz = -(_log_sigmoid(p).mean() + np.log(1 - 1 / (1 + np.exp(-e))).mean())
    assert latent_discriminator_loss(prior, enc).item() == pytest.approx(dz, rel=1e-5)
    log_real = _log_sigmoid(r).mean()
    dx = -(
        lambda_ae * (log_real + np.log(1 - 1 / (1 + np.exp(-x_rec))).mean())
        + w_gen * (log_real + np.log(1 - 1 / (1 + np.exp(-x_s))).mean())
    )
    got = image_discriminator_loss(real, rec, sample, lambda_ae, w_gen).item()
    assert got == pytest.approx(dx, rel=1e-5)
    eg = (
        lambda_ae * (12.5 - _log_sigmoid(x_rec).mean())
        - _log_sigmoid(e).mean()
        - w_gen * _log_sigmoid(x_s).mean()
    )
    got = autoencoder_loss(torch.tensor(12.5), rec, enc, sample, lambda_ae, w_gen).total.item()
    assert got == pytest.approx(eg, rel=1e-5)


def test_generator_side_is_non_saturating():
    """-log sigma(l), not log(1 - sigma(l)): confident rejections of the fakes (l = -10) still
    give the generator a gradient of about -1 per logit, not about 0."""
    logits = torch.full((4,), -10.0, requires_grad=True)
    autoencoder_loss(torch.tensor(0.0), logits, torch.zeros(4), torch.zeros(4)).total.backward()
    assert logits.grad is not None
    assert torch.allclose(logits.grad, torch.full((4,), -0.9 / 4), atol=1e-4)
