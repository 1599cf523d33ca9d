"""Multiple-exemplar face hallucination with PWAVE (thesis ch. 6: x8 and x16 CelebA
super-resolution conditioned on same-identity exemplars; spec ``shared/specs/hallucination.md``).
The networks, one concept per file:

- ``blocks``: conv-LReLU, the down, up and residual blocks (equalized learning rate);
- ``exemplar_encoder``: E_Ex, shared over exemplars, two taps at H_LR and 2 H_LR;
- ``small_generator``: G_S, I_LR -> I'_LR at 2 H_LR;
- ``pwave``: WNN-1 and WNN-2, the L1-normalised pixel weights W and the fused features
  (``uniform_weights``: W = 1/m at inference, the analysis's control);
- ``isr``: the ISR trunk (M2 residual and M1 up-sample blocks, fusion at both scales);
- ``generator``: ``ExemplarSRGenerator``, all of the above and the optimizer groups;
- ``critic``: the StyleGAN-like WGAN-GP critic with minibatch stddev;
- ``module``: ``ExemplarSRModule``, the LightningModule (G_S, critic and main updates; PSNR / SSIM).

The shared pieces are in ``components``: ``equalized`` (equalized learning rate),
``minibatch_stddev`` and ``adversarial_losses`` (WGAN-GP).
"""

from lightning_modules.exemplar_sr.blocks import DownBlock, ResBlock, UpBlock, conv_lrelu
from lightning_modules.exemplar_sr.critic import ExemplarSRCritic
from lightning_modules.exemplar_sr.exemplar_encoder import ExemplarEncoder
from lightning_modules.exemplar_sr.generator import ExemplarSRAux, ExemplarSRGenerator
from lightning_modules.exemplar_sr.isr import ISR
from lightning_modules.exemplar_sr.module import ExemplarSRModule
from lightning_modules.exemplar_sr.pwave import (
    PWAVE,
    PWAVEOutput,
    WeightNet,
    normalise_weights,
    uniform_weights,
    weight_entropy,
)
from lightning_modules.exemplar_sr.small_generator import SmallGenerator

__all__ = [
    "ISR",
    "PWAVE",
    "DownBlock",
    "ExemplarEncoder",
    "ExemplarSRAux",
    "ExemplarSRCritic",
    "ExemplarSRGenerator",
    "ExemplarSRModule",
    "PWAVEOutput",
    "ResBlock",
    "SmallGenerator",
    "UpBlock",
    "WeightNet",
    "conv_lrelu",
    "normalise_weights",
    "uniform_weights",
    "weight_entropy",
]
