"""VEBI's interpretation (the mu-lasso per pool) and the feature-importance test, on planted
problems whose answer is known, with mCA checked against scikit-learn's balanced accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from experiments.vebi import assertions
from lightning_modules.vebi.feature_importance import ablation_sets, ablation_study
from lightning_modules.vebi.interpretation import fit_interpretation
from lightning_modules.vebi.responses import ResponseIndex, ResponseLayer


def _index() -> ResponseIndex:
    """A conv layer of 6 filters and an fc layer of 10 units (m = 16)."""
    return ResponseIndex(
        [ResponseLayer("conv", "relu1", "conv", 6), ResponseLayer("fc", "relu2", "fc", 10)]
    )


def _planted(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x whose conv entry c and fc entry 6 + c fire for class c (3 classes), the rest noise;
    each layer block sums to 1 as VEBI's x does."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.rand(n, 16, generator=g) * 0.05
    x[torch.arange(n), labels] += 1.0
    x[torch.arange(n), 6 + labels] += 1.0
    x[:, :6] /= x[:, :6].sum(1, keepdim=True)
    x[:, 6:] /= x[:, 6:].sum(1, keepdim=True)
    return x, labels


def test_the_lasso_selects_the_planted_entries_per_class_and_pool():
    x, labels = _planted()
    index = _index()
    fit = fit_interpretation(x, labels, index, num_classes=3, pool="all", mu=10.0)
    for c in range(3):  # each class's weights include its own conv and fc entries
        assert fit.per_class[c, c] and fit.per_class[6 + c, c]
    assert fit.weights.shape == (16, 3) and fit.solution.converged.all()
    assert fit.weights.abs().sum(0).max() <= 10.0 * (1 + 1e-6)
    conv = fit_interpretation(x, labels, index, num_classes=3, pool="only_conv", mu=10.0)
    assert not conv.selected[6:].any() and (conv.weights[6:] == 0).all()
    assert conv.per_class[[0, 1, 2], [0, 1, 2]].all()
    # planted entries predict their class: argmax of x W recovers the labels
    assert ((x.double() @ fit.weights).argmax(1) == labels).all()


def test_shuffled_labels_lose_the_planted_structure_and_centering_is_optional():
    x, labels = _planted()
    index = _index()
    shuffled = fit_interpretation(x, labels, index, 3, mu=10.0, shuffle_labels=True, seed=1)
    assert ((x.double() @ shuffled.weights).argmax(1) == labels).float().mean() < 0.6
    centred = fit_interpretation(x, labels, index, 3, mu=10.0, center=True)
    assert ((x.double() @ centred.weights).argmax(1) == labels).all()
    with pytest.raises(ValueError, match="x has 15 entries"):
        fit_interpretation(x[:, :15], labels, index, 3)
    with pytest.raises(ValueError, match="300 response vectors but 299 labels"):
        fit_interpretation(x, labels[:-1], index, 3)


class _TwoPath(nn.Module):
    """Class scores = fc units 0..2 (after a ReLU); conv filters feed nothing that matters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 1)
        self.relu1 = nn.ReLU()
        self.fc = nn.Linear(4, 10)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(10, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[:3, :3] = torch.eye(3)
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[:, :3] = torch.eye(3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _ = self.relu1(self.conv(images))
        return self.head(self.relu2(self.fc(images.flatten(1))))


def test_ablating_the_deciding_units_costs_accuracy_and_mca_is_balanced_accuracy():
    net = _TwoPath().eval()
    index = ResponseIndex.of(net)
    assert [layer.read for layer in index.layers] == ["relu1", "relu2"]
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    images = torch.rand(100, 1, 2, 2, generator=g) * 0.1
    images.view(100, 4)[torch.arange(100), labels] += 1.0
    images[:10] = torch.rand(10, 1, 2, 2, generator=g)  # a few ambiguous images
    starts = range(0, 100, 32)
    batches = [{"image": images[i : i + 32], "label": labels[i : i + 32]} for i in starts]
    relevant = torch.zeros(index.size, dtype=torch.bool)
    relevant[6 + 1] = True  # the fc unit of class 1
    sets = ablation_sets(index, {"all": relevant}, draws=4, seed=0)
    assert sets.family("random_all") == [f"random_all_{d}" for d in range(4)]
    mca = ablation_study(net, index, batches, sets, num_classes=3)
    predicted = net(images).argmax(1)
    assert mca["original"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    with torch.no_grad():
        hidden = net.relu2(net.fc(images.flatten(1)))
        hidden[:, 1] = 0
        ablated = net.head(hidden).argmax(1)
    assert mca["all"] == pytest.approx(balanced_accuracy_score(labels, ablated))
    assert mca["all"] < mca["original"] - 0.25  # class 1 is never predicted any more
    drops = assertions.ablation_drops(mca, "all")
    assert drops["draws"] == 4
    randoms = [mca[f"random_all_{d}"] for d in range(4)]
    assert drops["random_drop_mean"] == pytest.approx(mca["original"] - np.mean(randoms))
