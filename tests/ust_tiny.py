"""UST at test scale (64 x 48): the tiny widths the UST tests and DDP scripts share."""

#: Generator widths (shapes do not depend on widths).
GENERATOR = {
    "base_channels": 8,
    "num_res_blocks": 1,
    "style_base_channels": 8,
    "mlp_channels": 16,
    "fit_in_channels": 8,
}
#: USTModule: the tiny generator, 2-scale PatchGANs of 3 layers (64 x 48 images), random LPIPS /
#: VGG trunks, a learning rate that moves the weights in one step.
MODULE = {
    **GENERATOR,
    "disc_base_channels": 8,
    "disc_num_layers": 3,
    "disc_num_scales": 2,
    "perceptual_weights": None,
    "random_trunks": True,
    "lr": 1e-3,
}
