"""Label accuracy ("success rate") and the per-label majority-class baseline.

The paper's "success rate" is the mean over images and labels of 1{(p >= 0.5) == y}, i.e.
1 - Hamming loss (torchmetrics ``MultilabelAccuracy(average="micro")``). The baseline predicts, for
each label, the class that is the majority in a reference split (the train labels) on every image
of the evaluated split.

Single-process functions on full arrays: under DDP, gather the rows first.
"""

from __future__ import annotations

from torch import Tensor

from lightning_modules.olr.checks import check_labels

__all__ = ["label_accuracy", "majority_baseline_accuracy", "majority_class", "per_label_accuracy"]


def per_label_accuracy(probabilities: Tensor, labels: Tensor, threshold: float = 0.5) -> Tensor:
    """Accuracy of each label: mean over images of 1{(p >= threshold) == y}.

    Args:
        probabilities: (N, L) probabilities (or any scores thresholded at ``threshold``).
        labels: (N, L) ground truth in {0, 1}.
        threshold: A label is predicted present when its probability is >= this.

    Returns:
        (L,) float64.
    """
    if probabilities.shape != labels.shape:
        raise ValueError(
            f"probabilities {tuple(probabilities.shape)} and labels {tuple(labels.shape)} "
            f"must have the same shape (N, L)"
        )
    check_labels(labels)
    if labels.shape[0] == 0:
        raise ValueError("label accuracy needs at least one image (N = 0)")
    hits = (probabilities >= threshold) == labels.bool()
    return hits.double().mean(0)


def label_accuracy(probabilities: Tensor, labels: Tensor, threshold: float = 0.5) -> Tensor:
    """The paper's success rate: mean over images and labels of 1{(p >= threshold) == y}.

    Equal to 1 - Hamming loss. Returns a float64 scalar tensor.
    """
    return per_label_accuracy(probabilities, labels, threshold).mean()


def majority_class(reference_labels: Tensor) -> Tensor:
    """(L,) int64: 1 where a label is present in more than half of ``reference_labels`` (N, L).

    A label present in exactly half of the images gets 0 (the tie goes to absent).
    """
    check_labels(reference_labels)
    if reference_labels.shape[0] == 0:
        raise ValueError("the majority class needs at least one reference image (N = 0)")
    prevalence = reference_labels.double().mean(0)
    return (prevalence > 0.5).long()


def majority_baseline_accuracy(reference_labels: Tensor, labels: Tensor) -> Tensor:
    """Per-label accuracy on ``labels`` of predicting each label's majority class of the reference.

    Args:
        reference_labels: (N_ref, L) labels the majority is taken from (the train split).
        labels: (N, L) labels of the evaluated split (the test split).

    Returns:
        (L,) float64; its mean is the baseline's label accuracy.
    """
    check_labels(labels, columns=reference_labels.shape[-1])
    majority = majority_class(reference_labels).to(labels.device)
    prediction = majority.double().expand(labels.shape[0], -1)
    return per_label_accuracy(prediction, labels, threshold=0.5)
