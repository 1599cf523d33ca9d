"""OLR analyses and label editing as pure functions, against numpy / scikit-learn / hand values:
label accuracy and the majority baseline, norm correlation and AUROC (spec assertions 2 and 4),
PCA of one label (assertion 5, Fig. 5), the collapse check, class statistics and editing
(eqs. 4-5, assertion 7's edits), and the figures (Figs. 4, 5, 7-8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import hamming_loss, roc_auc_score

from lightning_modules.olr.accuracy import (
    label_accuracy,
    majority_baseline_accuracy,
    majority_class,
    per_label_accuracy,
)
from lightning_modules.olr.collapse import pc1_ratio
from lightning_modules.olr.editing import (
    EMPHASISED_SCALE,
    REMOVE_SCALE,
    add_label,
    class_statistics,
    remove_label,
    sample_label,
    swap_label,
)
from lightning_modules.olr.figures import editing_panel, norm_correlation_heatmap, pca_strip
from lightning_modules.olr.norms import embedding_norms, norm_auroc, norm_correlation
from lightning_modules.olr.pca import collapsed_labels, label_pca, strip_indices


def _data(n: int = 200, num_labels: int = 4, k: int = 5, seed: int = 0):
    """Embeddings whose label slots are larger (and shifted) on positives, and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, num_labels, generator=g) < 0.4).long()
    embeddings = torch.randn(n, num_labels, k, generator=g)
    embeddings = embeddings + 2.0 * labels[..., None] * torch.linspace(1, 2, k)
    return embeddings, labels


# --- 1. label accuracy and the majority baseline --------------------------------------------------


def test_label_accuracy_hand_worked():
    p = torch.tensor([[0.9, 0.2, 0.5], [0.4, 0.6, 0.49]])
    y = torch.tensor([[1, 0, 1], [1, 1, 1]])
    # hits: (1, 1, 1) and (0, 1, 0): p = 0.5 counts as present, 0.49 as absent
    assert torch.equal(per_label_accuracy(p, y), torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64))
    assert label_accuracy(p, y).item() == pytest.approx(4 / 6)


def test_label_accuracy_is_one_minus_sklearn_hamming_loss():
    g = torch.Generator().manual_seed(1)
    p, y = torch.rand(300, 38, generator=g), (torch.rand(300, 38, generator=g) < 0.3).long()
    expected = 1.0 - hamming_loss(y.numpy(), (p >= 0.5).long().numpy())
    assert label_accuracy(p, y).item() == pytest.approx(expected, abs=1e-12)


def test_majority_baseline_hand_worked():
    train = torch.tensor([[1, 0, 1], [1, 0, 0], [1, 1, 1], [0, 0, 0]])  # prevalence .75 .25 .5
    test = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 1]])
    assert majority_class(train).tolist() == [1, 0, 0]  # a tie goes to absent
    acc = majority_baseline_accuracy(train, test)
    assert acc.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert acc.mean().item() == pytest.approx(2 / 3)


def test_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        label_accuracy(torch.rand(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="only hold 0 and 1"):
        label_accuracy(torch.rand(3, 2), torch.full((3, 2), 2))
    with pytest.raises(ValueError, match="2 columns but there are 3 labels"):
        majority_baseline_accuracy(torch.zeros(4, 3), torch.zeros(2, 2))


# --- 2. norm correlation and norm AUROC -----------------------------------------------------------


def test_norms_and_correlation_match_numpy():
    e, _ = _data()
    norms = np.linalg.norm(e.double().numpy(), axis=-1)
    assert np.allclose(embedding_norms(e).numpy(), norms, atol=1e-12)
    result = norm_correlation(e)
    assert result.r.shape == (4, 4) and result.r.dtype == torch.float64
    assert not result.constant.any()
    assert np.allclose(result.r.numpy(), np.corrcoef(norms, rowvar=False), atol=1e-10)
    assert result.undefined_message(["a", "b", "c", "d"]) is None


def test_correlation_of_a_constant_label_is_nan_and_named():
    e, _ = _data()
    e[:, 1] = 0.0  # a ReLU slot that is zero everywhere
    e[:, 3] = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0])  # norm 5 everywhere, entries constant
    result = norm_correlation(e)
    assert result.constant.tolist() == [False, True, False, True]
    assert torch.isnan(result.r[[1, 3]]).all() and torch.isnan(result.r[:, [1, 3]]).all()
    kept = np.linalg.norm(e[:, [0, 2]].double().numpy(), axis=-1)
    assert np.allclose(result.r[[0, 2]][:, [0, 2]].numpy(), np.corrcoef(kept, rowvar=False))
    message = result.undefined_message(["a", "b", "c", "d"])
    assert "2 label(s)" in message and "b, d" in message and "\n" not in message


def test_norm_auroc_matches_sklearn_and_is_nan_for_one_class():
    e, y = _data(n=150, seed=3)
    y[:, 2] = 1  # a single class: undefined
    e[:5, 0] = e[5:10, 0]  # tied norms
    auroc = norm_auroc(e, y)
    norms = np.linalg.norm(e.double().numpy(), axis=-1)
    for label in (0, 1, 3):
        assert auroc[label].item() == pytest.approx(roc_auc_score(y[:, label], norms[:, label]))
    assert math.isnan(auroc[2].item())
    assert auroc[[0, 1, 3]].min() > 0.9  # norms grow with the label: assertion 2's statistic


# --- 3. PCA of one label, the strip and the collapse check ----------------------------------------


def test_label_pca_matches_sklearn_and_fixes_the_sign():
    e, y = _data(n=300, k=6, seed=4)
    e[:, 2] = -e[:, 2]  # positives now lie at the low end of the raw axis
    result = label_pca(e, 2, y)
    x = e[:, 2].double().numpy()
    reference = PCA().fit(x)
    assert np.allclose(result.explained_variance_ratio.numpy(), reference.explained_variance_ratio_)
    projection = reference.transform(x)[:, 0]
    sign = 1.0 if np.dot(projection, result.projection.numpy()) > 0 else -1.0
    assert np.allclose(result.projection.numpy(), sign * projection, atol=1e-10)
    positive = y[:, 2].bool()
    assert result.projection[positive].mean() > result.projection[~positive].mean()
    assert torch.allclose(result.mean, e[:, 2].double().mean(0))
    assert torch.allclose((e[:, 2].double() - result.mean) @ result.component, result.projection)
    assert roc_auc_score(y[:, 2], result.projection.numpy()) >= 0.9  # assertion 5's statistic


def test_collapse_pc1_ratios_agree_with_label_pca():
    e, y = _data(n=120, seed=5)
    e[:, 3] = 1.5  # identical on every image: fully collapsed for the monitor, no PCA
    ratios = pc1_ratio(e)
    for label in range(3):
        assert ratios[label].item() == pytest.approx(
            label_pca(e, label, y).explained_variance_ratio[0].item()
        )
    assert ratios[3].item() == 1.0
    assert torch.isnan(label_pca(e, 3, y).explained_variance_ratio).all()


def test_label_pca_rejects_a_single_class():
    e, y = _data()
    y[:, 0] = 0
    with pytest.raises(ValueError, match="single class"):
        label_pca(e, 0, y)


def test_strip_indices_hand_worked_and_against_numpy():
    projection = torch.tensor([0.5, -1.0, 3.0, 0.5, 2.0, -2.0, 1.0])
    indices, ranks = strip_indices(projection, count=3, step=3)
    # ascending (stable): 5, 1, 0, 3, 6, 4, 2 -> ranks 0, 3, 6
    assert indices.tolist() == [5, 3, 2] and ranks.tolist() == [0, 3, 6]
    values = torch.randn(1000, generator=torch.Generator().manual_seed(6))
    indices, ranks = strip_indices(values)  # count 10, step 100
    assert indices.tolist() == np.argsort(values.numpy(), kind="stable")[::100].tolist()
    with pytest.raises(ValueError, match="needs more than 9"):
        strip_indices(projection, count=4, step=3)


def test_collapsed_labels_lists_ratios_above_threshold_and_no_variance():
    names = ["Smiling", "Male", "Bald", "Young"]
    ratios = torch.tensor([0.5, 0.97, math.nan, 0.95], dtype=torch.float64)
    found, message = collapsed_labels(ratios, names)
    assert found == ["Male", "Bald"]  # 0.95 itself is not above the threshold
    assert "Male (0.970)" in message and "Bald (no variance)" in message
    assert "2 of 4" in message and "\n" not in message
    assert collapsed_labels(torch.tensor([0.5, 0.97, 0.1, 0.2]), names, threshold=0.98) == (
        [],
        None,
    )


# --- 4. class statistics (eqs. 4-5) and editing ---------------------------------------------------


def test_class_statistics_match_numpy_biased_covariance():
    e, y = _data(n=250, seed=7)
    y[:, 3] = 0  # no positive at all
    stats = class_statistics(e, y)
    for label in range(3):
        x = e[y[:, label].bool(), label].double().numpy()
        assert np.allclose(stats.mean[label].numpy(), x.mean(0))
        assert np.allclose(stats.covariance[label].numpy(), np.cov(x, rowvar=False, bias=True))
        second_moment = x.T @ x / len(x)  # eq. 5 as written: E[XX^T] - E[X]E[X]^T
        outer = np.outer(x.mean(0), x.mean(0))
        assert np.allclose(stats.covariance[label].numpy(), second_moment - outer)
        assert stats.count[label].item() == len(x)
    assert stats.count[3].item() == 0
    assert torch.isnan(stats.mean[3]).all() and torch.isnan(stats.covariance[3]).all()
    with pytest.raises(ValueError, match="no positive"):
        sample_label(stats, 3, 1)


def test_samples_follow_the_fitted_gaussian_without_touching_the_global_rng():
    e, y = _data(n=400, k=3, seed=8)
    stats = class_statistics(e, y)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    draws = sample_label(stats, 1, 40_000, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.allclose(draws.mean(0), stats.mean[1], atol=0.03)
    covariance = torch.from_numpy(np.cov(draws.numpy(), rowvar=False, bias=True))
    assert torch.allclose(covariance, stats.covariance[1], atol=0.04)
    again = sample_label(stats, 1, 40_000, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_sampling_a_singular_covariance_uses_the_jitter():
    e, y = _data(n=50, seed=9)
    y[:, 0] = 0
    y[7, 0] = 1  # one positive: Sigma_0 = 0
    stats = class_statistics(e, y)
    draws = sample_label(stats, 0, 5, torch.Generator().manual_seed(1), jitter=1e-6)
    assert torch.allclose(draws, stats.mean[0].expand(5, -1), atol=1e-2)


def test_add_label_changes_only_its_row_and_scales_the_draw():
    e, y = _data(n=30, seed=10)
    stats = class_statistics(e, y)
    edited = add_label(e, 2, stats, generator=torch.Generator().manual_seed(3))
    keep = [0, 1, 3]
    assert torch.equal(edited[:, keep], e[:, keep]) and edited.dtype == e.dtype
    v = sample_label(stats, 2, 30, torch.Generator().manual_seed(3))
    assert torch.allclose(edited[:, 2], v.float())
    emphasised = add_label(e, 2, stats, EMPHASISED_SCALE, torch.Generator().manual_seed(3))
    assert torch.allclose(emphasised[:, 2], 1.5 * v.float())
    assert torch.equal(emphasised[:, keep], e[:, keep])
    assert not torch.equal(edited[:, 2], e[:, 2])
    assert torch.equal(e, _data(n=30, seed=10)[0])  # the input is not modified


def test_remove_label_zeroes_or_shrinks_only_its_row():
    e, y = _data(n=30, seed=11)
    removed = remove_label(e, 1)
    assert torch.equal(removed[:, 1], torch.zeros(30, 5))
    assert torch.equal(removed[:, [0, 2, 3]], e[:, [0, 2, 3]])
    stats = class_statistics(e, y)
    shrunk = remove_label(e, 1, stats, REMOVE_SCALE, torch.Generator().manual_seed(2))
    v = sample_label(stats, 1, 30, torch.Generator().manual_seed(2))
    assert torch.allclose(shrunk[:, 1], 0.1 * v.float())
    assert torch.equal(shrunk[:, [0, 2, 3]], e[:, [0, 2, 3]])
    with pytest.raises(ValueError, match="pass stats"):
        remove_label(e, 1, scale=0.1)
    with pytest.raises(ValueError, match="out of range"):
        remove_label(e, 4)


def test_swap_label_takes_only_that_row_from_the_donors():
    e, _ = _data(n=12, seed=12)
    donors, _ = _data(n=12, seed=13)
    swapped = swap_label(e, donors, 3)
    assert torch.equal(swapped[:, 3], donors[:, 3])
    assert torch.equal(swapped[:, :3], e[:, :3])
    assert torch.equal(e, _data(n=12, seed=12)[0])  # the input is not modified
    with pytest.raises(ValueError, match="shape of embeddings"):
        swap_label(e, donors[:5], 3)


# --- 5. figures -----------------------------------------------------------------------------------


def test_heatmap_renders_with_names_values_and_nan():
    e, _ = _data(n=60, num_labels=6)
    e[:, 4] = 0.0
    image = norm_correlation_heatmap(norm_correlation(e).r, [f"label_{i}" for i in range(6)])
    assert image.mode == "RGB" and image.width > 300 and image.height > 300
    big = norm_correlation_heatmap(torch.eye(38, dtype=torch.float64), [f"n{i}" for i in range(38)])
    assert big.width > image.width and big.height > image.height
    with pytest.raises(ValueError, match="L = 5 names"):
        norm_correlation_heatmap(torch.eye(6), ["a"] * 5)


def test_pca_strip_and_editing_panel_render():
    images = torch.rand(10, 3, 46, 46)
    strip = pca_strip(images, torch.linspace(-2, 2, 10), title="Mouth_Slightly_Open")
    one_row = pca_strip(images[:5], torch.linspace(-2, 2, 5))
    assert strip.height > one_row.height and strip.width >= one_row.width
    recon = torch.rand(3, 3, 44, 44)
    fig7 = editing_panel(
        images[:3], recon, [recon.flip(-1)], ["+Chubby", "-Eyeglasses", "+Big_Lips"]
    )
    fig8 = editing_panel(
        images[:3], recon, [recon, recon.flip(-1)], ["+Chubby"] * 3, ("s = 1", "s = 1.5")
    )
    assert fig7.mode == fig8.mode == "RGB" and fig8.width > fig7.width
    with pytest.raises(ValueError, match="one image per note"):
        editing_panel(images[:3], recon[:2], [recon], ["+a", "+b", "+c"])
    with pytest.raises(ValueError, match="projections"):
        pca_strip(images, torch.zeros(3))
