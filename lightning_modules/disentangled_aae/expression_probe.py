"""The expression probe of Table 3: a small MLP trained on frozen features, scored by ROC-AUC.

The ``disentangle`` spec (sections 3 and 6): three fully connected layers,
Linear(d, 200)-ReLU-Dropout(0.2)-Linear(200, 200)-ReLU-Dropout(0.2)-Linear(200, C), trained for
5 epochs (Adam 1e-3, batch 100 [default]) on training-split features with cross-entropy weighted
by 1 / N_class [paper], then one-vs-rest ROC-AUC per class on the softmax scores of the
evaluation features and their macro mean (torchmetrics ``MulticlassAUROC``). The suite's classes
are the four proxy expressions of ``datamodules.expression_proxy`` ([SUBST] for AffectNet's 8).

Suite choices [default]: the features are standardised with the training features' mean and
standard deviation (the sub-vectors have different scales: f_p is in radians); a class without
positives or without negatives among the evaluation labels has no AUC (NaN) and the macro mean is
over the others (torchmetrics would count it as 0; with every class present both agree).
Everything random (initialisation, dropout, batch order) comes from ``seed``: batches from a
``torch.Generator``, the rest inside ``torch.random.fork_rng``, so the global random state is left
as it was.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAUROC

__all__ = [
    "ExpressionProbe",
    "FittedProbe",
    "ProbeScores",
    "class_auroc",
    "class_weights",
    "expression_auc",
    "fit_expression_probe",
]


class ExpressionProbe(nn.Sequential):
    """Linear(d, h)-ReLU-Dropout(p)-Linear(h, h)-ReLU-Dropout(p)-Linear(h, C): logits (N, C).

    Args:
        in_features: d, the width of the features.
        num_classes: C.
        hidden: h (200).
        dropout: p (0.2).
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: int = 200, dropout: float = 0.2
    ) -> None:
        if in_features < 1 or num_classes < 2 or hidden < 1:
            raise ValueError(
                f"need in_features >= 1, num_classes >= 2 and hidden >= 1, got {in_features}, "
                f"{num_classes} and {hidden}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


@dataclass
class FittedProbe:
    """A trained probe and the standardisation of its inputs.

    Attributes:
        probe: The network, in eval mode.
        mean: (d,) training-feature mean subtracted first.
        std: (d,) training-feature standard deviation divided by next (1 where it is 0).
    """

    probe: ExpressionProbe
    mean: Tensor
    std: Tensor

    @torch.no_grad()
    def scores(self, features: Tensor) -> Tensor:
        """Softmax class scores (N, C) of features (N, d)."""
        x = (features.float() - self.mean) / self.std
        return torch.softmax(self.probe(x), dim=1)


@dataclass
class ProbeScores:
    """Table 3's numbers for one feature block.

    Attributes:
        per_class: float64 (C,) one-vs-rest ROC-AUC per class; NaN for a class without positives
            or without negatives among the evaluation labels.
        macro: Mean of the defined entries of ``per_class`` (NaN if none is defined).
        evaluated: long (C,) evaluation images per class.
        predicted: long (N,) the highest-scoring class of each evaluation image (Fig. 6).
    """

    per_class: Tensor
    macro: float
    evaluated: Tensor
    predicted: Tensor


def class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Cross-entropy class weights proportional to 1 / N_class: N / (C' N_c), 0 where N_c = 0.

    C' is the number of classes present, so the weights average 1 over the training images.

    Args:
        labels: Integer (N,) classes in [0, num_classes).
        num_classes: C.
    """
    _check_labels(labels, num_classes, "training")
    counts = torch.bincount(labels, minlength=num_classes).float()  # (C,)
    present = counts > 0
    weights = torch.zeros(num_classes, device=labels.device)
    weights[present] = len(labels) / (int(present.sum()) * counts[present])
    return weights


def fit_expression_probe(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 100,
    seed: int = 0,
    hidden: int = 200,
    dropout: float = 0.2,
) -> FittedProbe:
    """Train the probe on (features, labels) with class-weighted cross-entropy and Adam.

    Args:
        features: (N, d) training features (any device; the probe trains there).
        labels: Integer (N,) classes in [0, num_classes).
        num_classes: C.
        epochs: Passes over the training features (5).
        lr: Adam learning rate (1e-3).
        batch_size: Images per step (100; the last batch of an epoch may be smaller).
        seed: Seed of the initialisation, dropout and batch order.
        hidden: Hidden width (200).
        dropout: Dropout probability (0.2).
    """
    if features.dim() != 2 or len(features) != len(labels) or len(features) == 0:
        raise ValueError(
            f"features must be (N, d) with N = {len(labels)} >= 1 labels, got "
            f"{tuple(features.shape)}"
        )
    _check_labels(labels, num_classes, "training")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(
            f"need epochs, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}"
        )
    device = features.device
    x = features.detach().float()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    x = (x - mean) / std
    y = labels.to(device).long()
    weights = class_weights(y, num_classes)
    order = torch.Generator().manual_seed(seed)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        probe = ExpressionProbe(x.shape[1], num_classes, hidden, dropout).to(device)
        optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
        probe.train()
        for _ in range(epochs):
            permutation = torch.randperm(len(x), generator=order).to(device)
            for rows in permutation.split(batch_size):
                loss = F.cross_entropy(probe(x[rows]), y[rows], weight=weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return FittedProbe(probe.eval(), mean, std)


def class_auroc(scores: Tensor, labels: Tensor, num_classes: int) -> ProbeScores:
    """One-vs-rest ROC-AUC per class of (N, C) scores and their macro mean.

    Args:
        scores: (N, C) class scores (softmax probabilities).
        labels: Integer (N,) true classes in [0, num_classes).
        num_classes: C.
    """
    _check_labels(labels, num_classes, "evaluation")
    if scores.shape != (len(labels), num_classes):
        raise ValueError(
            f"scores must be ({len(labels)}, {num_classes}), got {tuple(scores.shape)}"
        )
    labels = labels.to(scores.device).long()
    metric = MulticlassAUROC(num_classes=num_classes, average=None).to(scores.device)
    with warnings.catch_warnings():  # a class without positives: its NaN is set below
        warnings.filterwarnings("ignore", "No positive samples", UserWarning)
        per_class = metric(scores.float(), labels).double().cpu()  # (C,)
    evaluated = torch.bincount(labels.cpu(), minlength=num_classes)
    defined = (evaluated > 0) & (evaluated < len(labels))
    per_class = torch.where(defined, per_class, torch.full_like(per_class, math.nan))
    macro = float(per_class[defined].mean()) if bool(defined.any()) else math.nan
    return ProbeScores(per_class, macro, evaluated, scores.argmax(dim=1).cpu())


def expression_auc(
    train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], num_classes: int, seed: int = 0
) -> ProbeScores:
    """Train the probe on the training features and score it on the test features (Table 3).

    Args:
        train: ``(features (N, d), classes (N,))`` of the training split.
        test: ``(features (M, d), classes (M,))`` of the evaluation split.
        num_classes: C.
        seed: Seed of the probe (``fit_expression_probe``, 5 epochs).
    """
    (train_x, train_y), (test_x, test_y) = train, test
    if test_x.dim() != 2 or train_x.dim() != 2 or test_x.shape[1] != train_x.shape[1]:
        raise ValueError(
            f"train and test features must be (N, d) and (M, d), got {tuple(train_x.shape)} and "
            f"{tuple(test_x.shape)}"
        )
    fitted = fit_expression_probe(train_x, train_y, num_classes, seed=seed)
    return class_auroc(fitted.scores(test_x.to(train_x.device)), test_y, num_classes)


def _check_labels(labels: Tensor, num_classes: int, which: str) -> None:
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(
            f"{which} labels must be an integer (N,) tensor, got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{which} labels must be in [0, {num_classes}), got "
            f"{int(labels.min())}..{int(labels.max())}"
        )
