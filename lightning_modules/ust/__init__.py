"""UST, unpaired shape translation (thesis ch. 4: clothing try-on and take-off with a Fit-in
module, a shared style encoder and cross-domain retrieval; spec ``shared/specs/ust.md``).
One concept per file:

- ``blocks``: reflect-padded conv blocks, the IN residual block, Kaiming initialisation;
- ``masks``: the clothing mask m_A: checks, boxes, the white-filled item view, the context;
- ``fit_in``: the Fit-in module and its exact batched paste;
"""

from lightning_modules.ust.fit_in import FitIn, paste_into_boxes
from lightning_modules.ust.masks import mask_boxes, remove_item, white_fill

__all__ = [
    "FitIn",
    "mask_boxes",
    "paste_into_boxes",
    "remove_item",
    "white_fill",
]
