"""Generative-model metrics on feature vectors (the extractor that makes the features is separate).

- ``gaussian``: ``FeatureGaussian``, the mean, covariance and count of features in float64 from
  summable states (sum of x, sum of x x^T, n), exact under DDP whatever each process holds;
- ``frechet``: ``frechet_distance``, the Frechet distance between two Gaussians (FID's formula)
  through symmetric factorizations instead of a general matrix square root;
- ``kid``: ``kernel_inception_distance``, the unbiased MMD^2 of the cubic polynomial kernel over
  random subsets (KID), with the subsets an explicit input (``draw_subsets``);
- ``random_features``: ``RandomConvFeatures``, a seeded random conv net whose pooled maps serve
  as FID features where no Inception exists (the synthetic twins on a CPU);
- ``stats_file``: ``RealStats`` and their file under a checked key (``read_stats``,
  ``write_stats``, ``stats_path``), the real-set cache of ``callbacks/fid.py``.
"""
