"""The disentangled adversarial autoencoder (Browatzki & Wallraven, "Robust Discrimination and
Generation of Faces using Compact, Disentangled Embeddings", ICCV Workshops 2019): an adversarial
autoencoder, then the mappings Phi / Phi^-1 that split its code into pose, identity, expression
and style, then joint training. One concept per file."""
