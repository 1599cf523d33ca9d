"""The Fréchet distance of circle reconstructions x^ against the test crops x (spec "Evaluation:
Circle", FID(x^ vs x)), and which feature space it is computed in.

FID proper is the Fréchet distance of the 2048-d pool features of the FID Inception-v3
(``components.inception.FIDInceptionV3``), whose weights cannot be downloaded here. ``auto``
takes them when a verified copy is on disk and otherwise the penultimate features of the judge
(the independent pixel-space attribute classifier, the input of its last linear layer), under
another name, "FID (judge features)": a number of the same formula in another space, never to be
read as Inception FID. ``inception`` demands the weights (an error names where they were looked
for); ``judge`` never looks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import Tensor

from callbacks.generative.frechet import frechet_distance
from callbacks.generative.gaussian import gaussian_from_sums
from lightning_modules.components.inception import inception_weights_path
from lightning_modules.components.pretrained import WeightsNotFoundError

__all__ = ["FEATURE_SPACES", "FeatureSpace", "choose_feature_space", "feature_frechet"]

FeatureSpace = Literal["inception", "judge"]
#: The name each feature space's number is reported under.
FEATURE_SPACES: dict[str, str] = {
    "inception": "FID (Inception-v3)",
    "judge": "FID (judge features)",
}


def choose_feature_space(
    requested: str, inception_weights: Path | None | Literal["look"] = "look"
) -> tuple[FeatureSpace, str]:
    """The feature space of the Fréchet distance and a note saying why.

    Args:
        requested: ``auto``, ``inception`` or ``judge`` (``--fid-features``).
        inception_weights: The verified weights file, None where there is none, or ``look``
            (the default): look in the standard places (``inception_weights_path``).

    Raises:
        WeightsNotFoundError: ``inception`` was requested and the weights are absent.
    """
    if requested not in ("auto", "inception", "judge"):
        raise ValueError(f"--fid-features must be auto, inception or judge, got {requested!r}")
    if requested == "judge":
        return "judge", "the judge's penultimate features, as requested (not Inception FID)"
    missing = ""
    if inception_weights == "look":
        try:
            inception_weights = inception_weights_path()
        except WeightsNotFoundError as error:
            inception_weights, missing = None, str(error)
    if inception_weights is not None:
        return "inception", f"Inception-v3 pool features from {inception_weights}"
    if requested == "inception":
        raise WeightsNotFoundError(missing or "the FID Inception-v3 weights are absent")
    return "judge", (
        "the FID Inception-v3 weights are absent: the Fréchet distance is computed in the "
        "judge's penultimate feature space and is not comparable with Inception FID"
    )


def feature_frechet(first: Tensor, second: Tensor) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets (N1, d) and (N2, d).

    Means and unbiased covariances in float64 (as FID), then
    ``callbacks.generative.frechet.frechet_distance``.
    """
    if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1]:
        raise ValueError(
            f"features must be (N, d) with one d, got {tuple(first.shape)}, {tuple(second.shape)}"
        )
    stats = [_gaussian(features) for features in (first, second)]
    return frechet_distance(*stats[0], *stats[1])


def _gaussian(features: Tensor) -> tuple[Tensor, Tensor]:
    x = features.detach().cpu().double()
    return gaussian_from_sums(x.sum(0), x.T @ x, x.shape[0])
