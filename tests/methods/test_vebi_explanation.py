"""VEBI's explanation (top-K relevant filters, their heatmaps, the r-weighted map) and the
localization measures (AUC-IoU against scikit-learn's Jaccard score, mass inside a mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from lightning_modules.vebi.deconv import deconv_heatmaps
from lightning_modules.vebi.explanation import combine, explain, top_pairs
from lightning_modules.vebi.localization import (
    THRESHOLDS,
    auc_iou,
    centred_gaussian,
    iou_curve,
    mass_inside,
    random_heatmaps,
)
from lightning_modules.vebi.module_walk import ModuleWalk
from lightning_modules.vebi.nets import an8flower_cnn
from lightning_modules.vebi.responses import ResponseIndex, response_vectors


def test_auc_iou_is_the_mean_jaccard_over_the_thresholds():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 8, 8, generator=g)
    masks = torch.rand(3, 8, 8, generator=g) > 0.6
    total, per_image = auc_iou(maps, masks)
    for b in range(3):
        truth = masks[b].flatten().numpy()
        scores = [
            jaccard_score(truth, maps[b].flatten().numpy() > t, zero_division=1.0)
            for t in THRESHOLDS.numpy()
        ]
        assert per_image[b].item() == pytest.approx(100 * np.mean(scores))
    assert total == pytest.approx(per_image.mean().item())
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:7] = True
    assert auc_iou(mask.float(), mask)[0] == pytest.approx(100.0)  # the mask itself
    assert auc_iou(torch.ones(8, 8), mask)[0] == pytest.approx(100 * 12 / 64)  # all pixels
    assert iou_curve(torch.zeros(8, 8), mask)[0, 0] == 0.0  # nothing above t = 0
    with pytest.raises(ValueError, match="differ"):
        auc_iou(torch.ones(8, 8), mask[:4])


def test_mass_inside_and_the_reference_maps():
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0
    masks = torch.zeros(2, 1, 4, 4)
    masks[:, 0, 0, 0] = 1
    assert mass_inside(maps, masks).tolist() == [0.75, 0.0]  # the second map is all zero
    gaussian = centred_gaussian(9, 9)
    assert gaussian[4, 4] == 1.0 and gaussian.argmax() == 40
    assert torch.allclose(gaussian, gaussian.flip(0)) and torch.allclose(gaussian, gaussian.T)
    noise = random_heatmaps(2, 5, 6, seed=3)
    assert noise.shape == (2, 5, 6) and torch.equal(noise, random_heatmaps(2, 5, 6, seed=3))


def test_top_pairs_keep_the_positive_entries_in_order_and_combine_weights_by_relevance():
    relevance = torch.tensor([[0.1, -1.0, 0.5, 0.0], [-0.2, -0.1, -0.3, -0.4]])
    entries, values = top_pairs(relevance, 3)
    assert entries.tolist() == [[2, 0, -1], [-1, -1, -1]]
    assert torch.equal(values, torch.tensor([[0.5, 0.1, 0.0], [0.0, 0.0, 0.0]]))
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, 0], maps[0, 1, 1, 1] = 1.0, 1.0
    combined = combine(maps, torch.tensor([[3.0, 1.0]]))
    torch.testing.assert_close(combined[0], torch.tensor([[1.0, 0.0], [0.0, 1 / 3]]))
    assert combine(maps, torch.zeros(1, 2)).abs().sum() == 0


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return an8flower_cnn(num_classes=3).eval()


def test_explain_draws_the_top_relevant_filters_of_the_predicted_class(net):
    index = ResponseIndex.of(net)
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    x, logits = response_vectors(net, images, index)
    weights = torch.zeros(index.size, 3, dtype=torch.float64)
    weights[5, :] = 1.0  # conv1 filter 5 for every class
    weights[32 + 7, :] = 2.0  # conv2 filter 7
    weights[index.size - 1, 0] = 1.0  # an fc4 unit, for class 0 only
    explanation = explain(net, index, weights, images, top_k=3)
    assert torch.equal(explanation.classes, logits.argmax(1))
    walk = ModuleWalk.of(net)
    for b in range(4):
        r = weights.float().T[explanation.classes[b]] * x[b]
        order = [j for j in r.argsort(descending=True).tolist() if r[j] > 0][:3]
        got = [j for j in explanation.pairs[b].tolist() if j >= 0]
        assert got == order
        torch.testing.assert_close(explanation.relevance[b, : len(order)], r[order])
        first = explanation.pairs[b, 0].item()
        layer, q = index.entry(first)
        expected = deconv_heatmaps(walk, images[b : b + 1], layer.source, q)[0]
        torch.testing.assert_close(explanation.heatmaps[b, 0], expected)
    assert explanation.combined.amax(dim=(1, 2)).allclose(torch.ones(4))
    forced = explain(net, index, weights, images, classes=torch.tensor([1, 1, 1, 1]), top_k=3)
    assert (forced.pairs != index.size - 1).all()  # the fc4 unit explains class 0 only
    upsampled = explain(net, index, weights, images, top_k=3, drawing="upsampled_activation")
    kinds = {index.entry(j)[0].kind for j in upsampled.pairs.flatten().tolist() if j >= 0}
    assert kinds == {"conv"}
    nothing = explain(net, index, torch.zeros_like(weights), images)
    assert (nothing.pairs == -1).all() and nothing.combined.abs().sum() == 0
