"""UST, unpaired shape translation (thesis ch. 4: clothing try-on and take-off with a Fit-in
module, a shared style encoder and cross-domain retrieval; spec ``shared/specs/ust.md``).
One concept per file:

- ``blocks``: reflect-padded conv blocks, the IN residual block, Kaiming initialisation;
- ``adain``: AdaIN (Eq. 4.1), the AdaIN residual and up-sampling blocks;
- ``masks``: the clothing mask m_A: checks, boxes, the white-filled item view, the context;
- ``content_encoder``: E_A^C (first block masked by m_A) and E_B^C;
- ``style_encoder``: E^S and the MLP of AdaIN parameters;
- ``decoders``: G_B (take-off) and G_A (try-on: mask attention, Fit-in);
- ``fit_in``: the Fit-in module and its exact batched paste;
- ``generator``: everything the generator optimizer updates, and the streams' four calls;
- ``discriminator``: the multi-scale PatchGANs D_A (image + m_A) and D_B;
- ``gram``: Gram matrices of frozen VGG16 features (Eq. 4.6's style term);
- ``symmetry``: the symmetry loss (Eq. 4.7) in its two forms;
- ``roi``: ROI(x), the clothing region on the catalog's frame (Eq. 4.6, Try-on ROI);
- ``retrieval``: Euclidean rankings, re-ranking of the top-kappa, Recall@k (Tables 4.3, 4.4);
- ``colour_histogram``: the 8 x 4 x 4 HSV histogram baseline of retrieval and its L1 distance;
- ``module``: ``USTModule``, the LightningModule (both players' steps, Eq. 4.8, evaluation).
"""

from lightning_modules.ust.adain import AdaIN, AdaINResBlock, AdaINUpBlock, adain
from lightning_modules.ust.colour_histogram import (
    colour_histogram,
    histogram_l1_distance,
    rgb_to_hsv,
)
from lightning_modules.ust.content_encoder import ContentEncoder
from lightning_modules.ust.decoders import AdaINDecoder, TakeOffDecoder, TryOnDecoder
from lightning_modules.ust.discriminator import MultiScaleDiscriminator, PatchDiscriminator
from lightning_modules.ust.fit_in import FitIn, paste_into_boxes
from lightning_modules.ust.generator import USTGenerator
from lightning_modules.ust.gram import GramVGG16, gram_matrix
from lightning_modules.ust.masks import mask_boxes, remove_item, white_fill
from lightning_modules.ust.module import USTModule
from lightning_modules.ust.retrieval import (
    euclidean_ranking,
    rank_by,
    ranks_of_correct,
    recall_at_k,
    rerank,
    top_pairs,
)
from lightning_modules.ust.roi import crop_resize, roi
from lightning_modules.ust.style_encoder import StyleEncoder, StyleModule
from lightning_modules.ust.symmetry import symmetry_loss, symmetry_loss_half

__all__ = [
    "AdaIN",
    "AdaINDecoder",
    "AdaINResBlock",
    "AdaINUpBlock",
    "ContentEncoder",
    "FitIn",
    "GramVGG16",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "StyleEncoder",
    "StyleModule",
    "TakeOffDecoder",
    "TryOnDecoder",
    "USTGenerator",
    "USTModule",
    "adain",
    "colour_histogram",
    "crop_resize",
    "euclidean_ranking",
    "gram_matrix",
    "histogram_l1_distance",
    "mask_boxes",
    "paste_into_boxes",
    "rank_by",
    "ranks_of_correct",
    "recall_at_k",
    "remove_item",
    "rerank",
    "rgb_to_hsv",
    "roi",
    "symmetry_loss",
    "symmetry_loss_half",
    "top_pairs",
    "white_fill",
]
