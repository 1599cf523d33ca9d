"""VEBI, visual explanation by interpretation (Oramas, Wang & Tuytelaars, ICLR 2019; Wang's thesis,
chapter 3): a trained classifier is interpreted by describing every training image with the
L1-normalised per-filter response strengths of all its layers, fitting a sparse linear map from
those responses to the labels (the mu-lasso of Eq. 3.1, whose non-zero weights are the relevant
(layer, filter) pairs of each class), and explained at test time by drawing the relevant filters
that respond most to an image with DeconvNet + guided backprop, resampled so that strided layers
invert without grid artefacts. The spec is ``shared/specs/vebi.md``.
"""
