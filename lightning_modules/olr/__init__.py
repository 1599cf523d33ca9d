"""OLR (Karatsiolis & Kamilaris, "Converting Image Labels to Meaningful and Information-rich
Embeddings"): label embeddings from a Siamese network trained on occluded image pairs.

- ``encoder``: ``SiameseEncoder`` (images -> L x k embeddings; its trunk is
  ``components.vgg.VGGTrunk``, the trunk of the spec's DEFAULT classifier too);
- ``decoder``: ``ReconstructionDecoder`` (Table 1), ``rescale`` (eq. 2), ``reconstruction_target``;
- ``probe``: ``LinearProbe`` (one dense layer, L k -> L);
- ``losses``: the pair loss L_S, its targets and constant baseline, the decoder loss L_R;
- ``collapse``: per-label explained-variance ratios, from DDP-summable moments (the monitor);
- analyses on full (gathered) embeddings: ``accuracy`` (label accuracy, majority baseline),
  ``norms`` (norm correlation, norm AUROC), ``pca`` (one label's PCA, the Fig. 5 strip, the
  collapse message), ``editing`` (class statistics, eqs. 4-5; adding and removing a label);
  ``figures`` (Figs. 4, 5, 7-8); ``checks`` (their input checks).
"""

from lightning_modules.olr.collapse import (
    embedding_moments,
    explained_variance_ratios,
    pc1_ratio,
    ratios_from_moments,
)
from lightning_modules.olr.decoder import ReconstructionDecoder, reconstruction_target, rescale
from lightning_modules.olr.encoder import SiameseEncoder
from lightning_modules.olr.losses import (
    ReconstructionLoss,
    constant_target_loss,
    pair_loss,
    pair_targets,
    reconstruction_loss,
    row_dots,
)
from lightning_modules.olr.probe import LinearProbe

__all__ = [
    "LinearProbe",
    "ReconstructionDecoder",
    "ReconstructionLoss",
    "SiameseEncoder",
    "constant_target_loss",
    "embedding_moments",
    "explained_variance_ratios",
    "pair_loss",
    "pair_targets",
    "pc1_ratio",
    "ratios_from_moments",
    "reconstruction_loss",
    "reconstruction_target",
    "rescale",
    "row_dots",
]
