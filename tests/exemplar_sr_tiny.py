"""Face hallucination at test scale: the tiny widths the exemplar-SR tests and DDP script share."""

#: ExemplarSRModule: narrow networks (shapes do not depend on widths), a random LPIPS trunk, the
#: WNN group at its own rate (distinct from ``lr``, so a test can tell the groups apart).
MODULE = {
    "isr_widths": (8, 8, 8),
    "encoder_widths": (4, 8, 8),
    "encoder_stem_channels": 4,
    "feature_channels": 8,
    "wnn_channels": 8,
    "small_channels": 8,
    "critic_widths": (4, 8),
    "perceptual_weights": None,
    "random_trunks": True,
    "wnn_lr": 2e-4,
}
