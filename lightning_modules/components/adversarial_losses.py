"""Adversarial losses of the suite's GAN methods: pure functions of raw discriminator outputs.

Every function returns a mean-reduced scalar tensor; the method applies its own weights.

- Non-saturating BCE on logits (Goodfellow et al. 2014; the AAE of ``disentangle``, Eqs. 2-5):
  ``bce_real_loss``, ``bce_fake_loss``, ``bce_discriminator_loss``, ``bce_generator_loss``.
- LSGAN (Mao et al., ICCV 2017, arXiv:1611.04076; ``ust``, thesis Eqs. 2.9/2.10):
  ``lsgan_discriminator_loss``, ``lsgan_generator_loss``.
- WGAN-GP (Gulrajani et al., NeurIPS 2017, arXiv:1704.00028; ``hallucination``, thesis Eq. 2.8):
  ``wgan_critic_loss``, ``wgan_generator_loss``, ``gradient_penalty``, ``drift_penalty``.
- BEGAN (Berthelot et al. 2017, arXiv:1703.10717; ``istrc``): ``began_reconstruction_loss``
  (L(v), also the generator's loss L(G(z))) and ``began_discriminator_loss``; the balance
  variable k_t lives in ``components/began_equilibrium.py``.

The BCE and LSGAN functions take one output or a sequence of outputs, one per scale of a
multi-scale discriminator (UST's PatchGAN at 3 scales, whose maps differ in size): the loss is
then the mean over scales of each scale's loss, every scale weighing the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MultiScale",
    "bce_discriminator_loss",
    "bce_fake_loss",
    "bce_generator_loss",
    "bce_real_loss",
    "began_discriminator_loss",
    "began_reconstruction_loss",
    "drift_penalty",
    "gradient_penalty",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "wgan_critic_loss",
    "wgan_generator_loss",
]

#: One discriminator output, or one per scale of a multi-scale discriminator.
MultiScale = Tensor | Sequence[Tensor]


def _scales(outputs: MultiScale, name: str) -> list[Tensor]:
    """``outputs`` as a non-empty list of per-scale tensors."""
    if isinstance(outputs, Tensor):
        return [outputs]
    scales = list(outputs)
    if not scales:
        raise ValueError(f"`{name}` is an empty sequence: give at least one scale's output")
    return scales


def _paired_scales(real: MultiScale, fake: MultiScale) -> list[tuple[Tensor, Tensor]]:
    """Real and fake outputs of the same discriminator, paired scale by scale."""
    if isinstance(real, Tensor) != isinstance(fake, Tensor):
        raise ValueError(
            "real and fake outputs must both be tensors or both be sequences of scales, got "
            f"{type(real).__name__} and {type(fake).__name__}"
        )
    reals, fakes = _scales(real, "real"), _scales(fake, "fake")
    if len(reals) != len(fakes):
        raise ValueError(f"real has {len(reals)} scales but fake has {len(fakes)}")
    return list(zip(reals, fakes, strict=True))


def _mean_over_scales(losses: list[Tensor]) -> Tensor:
    return torch.stack(losses).mean()


def bce_real_loss(logits: MultiScale) -> Tensor:
    """-E[log sigmoid(l)]: the BCE of logits whose target is "real" (label 1).

    Computed as -logsigmoid(l), finite for any finite logit (0 at l = +inf, -l at l = -inf).

    Args:
        logits: Raw discriminator outputs, any shape (e.g. (B, 1) or (B, 1, h, w)), or one such
            tensor per scale.
    """
    return _mean_over_scales([-F.logsigmoid(scale).mean() for scale in _scales(logits, "logits")])


def bce_fake_loss(logits: MultiScale) -> Tensor:
    """-E[log(1 - sigmoid(l))]: the BCE of logits whose target is "fake" (label 0).

    Computed as -logsigmoid(-l), since 1 - sigmoid(l) = sigmoid(-l).

    Args:
        logits: Raw discriminator outputs, any shape, or one such tensor per scale.
    """
    return _mean_over_scales([-F.logsigmoid(-scale).mean() for scale in _scales(logits, "logits")])


def bce_discriminator_loss(real_logits: MultiScale, fake_logits: MultiScale) -> Tensor:
    """-E[log D(real)] - E[log(1 - D(fake))]: ``bce_real_loss + bce_fake_loss``.

    The discriminator minimizes it (it maximizes the GAN value function). Give it detached fakes.

    Args:
        real_logits: Logits of real inputs, or one tensor per scale.
        fake_logits: Logits of generated inputs, or one tensor per scale (as many as real).
    """
    _paired_scales(real_logits, fake_logits)
    return bce_real_loss(real_logits) + bce_fake_loss(fake_logits)


def bce_generator_loss(fake_logits: MultiScale) -> Tensor:
    """-E[log D(fake)]: the non-saturating generator loss (``bce_real_loss`` of the fakes).

    Its gradient stays large while the discriminator rejects the fakes, unlike the saturating
    E[log(1 - D(fake))].

    Args:
        fake_logits: Logits of generated inputs, or one tensor per scale.
    """
    return bce_real_loss(fake_logits)


def lsgan_discriminator_loss(
    real: MultiScale,
    fake: MultiScale,
    *,
    real_target: float = 1.0,
    fake_target: float = 0.0,
) -> Tensor:
    """1/2 E[(D(real) - b)^2] + 1/2 E[(D(fake) - a)^2], Mao et al. Eq. 2 (b = 1, a = 0).

    Args:
        real: Discriminator outputs on real inputs, any shape, or one tensor per scale.
        fake: Outputs on (detached) generated inputs, or one tensor per scale (as many as real).
        real_target: b, the value the discriminator gives real inputs.
        fake_target: a, the value the discriminator gives generated inputs.
    """
    return _mean_over_scales(
        [
            0.5 * (r - real_target).square().mean() + 0.5 * (f - fake_target).square().mean()
            for r, f in _paired_scales(real, fake)
        ]
    )


def lsgan_generator_loss(fake: MultiScale, *, target: float = 1.0) -> Tensor:
    """1/2 E[(D(fake) - c)^2], Mao et al. Eq. 2 (c = 1: the generator wants fakes seen as real).

    Args:
        fake: Discriminator outputs on generated inputs, any shape, or one tensor per scale.
        target: c, the value the generator wants the discriminator to give its outputs.
    """
    return _mean_over_scales([0.5 * (f - target).square().mean() for f in _scales(fake, "fake")])


def wgan_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[D(fake)] - E[D(real)]: the critic's Wasserstein loss, without the gradient penalty.

    Args:
        real_scores: Critic scores of real inputs, (B,) or (B, 1).
        fake_scores: Critic scores of (detached) generated inputs, (B',) or (B', 1).
    """
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """-E[D(fake)]: the generator's Wasserstein loss.

    Args:
        fake_scores: Critic scores of generated inputs, (B,) or (B, 1).
    """
    return -fake_scores.mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, WGAN-GP.

    One eps ~ U[0, 1] per sample, drawn on ``real``'s device and dtype. Both inputs are detached,
    so the penalty trains only the critic: the input gradient is taken with ``create_graph=True``
    and the penalty's backward reaches the critic's parameters. The norm is over all non-batch
    dimensions of each sample's gradient. A critic that mixes samples (minibatch stddev) makes
    each sample's gradient include the other samples' scores, as in the reference practice of
    differentiating the sum of the scores.

    Args:
        critic: Maps (B, ...) inputs to (B,) or (B, 1) scores.
        real: Real inputs (B, ...), e.g. (B, C, H, W).
        fake: Generated inputs of the same shape.
        generator: Random generator for eps (on ``real``'s device); None uses the global one.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    if real.dim() < 2:
        raise ValueError(
            f"inputs must be (B, ...) with at least one non-batch dimension, got "
            f"shape {tuple(real.shape)}"
        )
    eps_shape = (real.size(0),) + (1,) * (real.dim() - 1)  # (B, 1, 1, 1) for images
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    mixed = eps * real.detach() + (1 - eps) * fake.detach()
    mixed.requires_grad_(True)
    scores = critic(mixed)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)  # (B, ...)
    norms = torch.linalg.vector_norm(grads.flatten(1), dim=1)  # (B,)
    return (norms - 1).square().mean()


def drift_penalty(real_scores: Tensor) -> Tensor:
    """E[D(real)^2]: keeps the critic's scores near zero (Karras et al. 2018; off by default).

    Args:
        real_scores: Critic scores of real inputs, (B,) or (B, 1).
    """
    return real_scores.square().mean()


def began_reconstruction_loss(images: Tensor, reconstructions: Tensor) -> Tensor:
    """L(v) = E|v - D(v)|: BEGAN's auto-encoder loss (eta = 1), mean over every element.

    L(x) on real images, L(G(z)) on generated ones; L(G(z)) is also the generator's loss.

    Args:
        images: Inputs v of the auto-encoding discriminator, (B, C, H, W).
        reconstructions: Its outputs D(v), same shape.
    """
    if images.shape != reconstructions.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and reconstructions "
            f"{tuple(reconstructions.shape)} differ in shape"
        )
    return (images - reconstructions).abs().mean()


def began_discriminator_loss(loss_real: Tensor, loss_fake: Tensor, k: Tensor | float) -> Tensor:
    """L_D = L(x) - k_t * L(G(z)): BEGAN's discriminator loss.

    ``k`` carries no gradient, and a tensor ``k`` is copied: updating the balance in place
    (``BEGANEquilibrium.update``) before this loss's backward leaves the backward intact.

    Args:
        loss_real: L(x), ``began_reconstruction_loss`` of real images.
        loss_fake: L(G(z)) of (detached) generated images.
        k: The balance variable k_t in [0, 1].
    """
    if isinstance(k, Tensor):
        k = k.detach().clone()
    return loss_real - k * loss_fake
