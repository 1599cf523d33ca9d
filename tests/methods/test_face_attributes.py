"""face_attributes (Le & Lee): class weights, weighted BCE, threshold search, checkpoint round
trip, learning and FFHQ labelling on the synthetic faces (spec assertions 1-5)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from lightning_modules.face_attributes.losses import (
    attribute_bce,
    class_balance_weights,
    positive_weights,
    weighted_bce,
)
from lightning_modules.face_attributes.thresholds import search_thresholds, threshold_grid

TINY_NET = {"channels": [8, 16, 32, 64], "stem_width": 8}
SMALL_NET = {"channels": [16, 32, 64, 128], "stem_width": 16}
SMALL_EPOCHS = 15
STRONG = ("Wearing_Hat", "Pale_Skin", "Gray_Hair", "Bangs", "Eyeglasses")  # large rendered cues
RARE = ("Wearing_Hat", "Blurry", "Pale_Skin", "Bald", "Mustache", "Eyeglasses")  # spec's rare set
SALIENT = ("Wearing_Hat", "Eyeglasses", "Black_Hair", "Blond_Hair", "Smiling")


# --- 1. class weights (eqs. 4-6) ------------------------------------------------------------------


def test_class_weights_hand_made_4x3():
    labels = torch.tensor([[1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.uint8)
    # N_t = (3, 1, 1), N = 5, M = 3: w = 5 / (3 * N_t) = (5/9, 5/3, 5/3)
    w = class_balance_weights(labels)
    assert torch.equal(w, torch.tensor([5 / 9, 5 / 3, 5 / 3], dtype=torch.float32))
    assert (w.double() * labels.double().sum(0)).sum().item() == pytest.approx(5.0, abs=1e-6)


def test_class_weights_clamp_absent_class_and_reject_bad_labels():
    labels = torch.tensor([[1, 0], [1, 0]])
    assert torch.allclose(class_balance_weights(labels), torch.tensor([0.5, 1.0]))  # N_t >= 1
    with pytest.raises(ValueError, match="no positive"):
        class_balance_weights(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        class_balance_weights(torch.tensor([[1, -1]]))
    assert torch.allclose(positive_weights(torch.tensor([[1, 0], [0, 0], [0, 1], [0, 1]])),
                          torch.tensor([3.0, 1.0]))  # fmt: skip


# --- 2. weighted BCE (eqs. 1-3, sign fixed) -------------------------------------------------------


def test_weighted_bce_matches_formula_and_plain_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    target = (torch.rand(7, 5, generator=g) < 0.4).double()
    w = torch.rand(5, generator=g, dtype=torch.float64) * 4
    s = 1 / (1 + torch.exp(-logits))
    per_entry = -(target * torch.log(s) + (1 - target) * torch.log(1 - s))
    expected = (w.view(1, -1) * per_entry).sum() / (7 * 5)
    assert abs(weighted_bce(logits, target, w).item() - expected.item()) < 1e-6
    ones = torch.ones(5, dtype=torch.float64)
    plain = nn.BCEWithLogitsLoss()(logits, target)
    assert abs(weighted_bce(logits, target, ones).item() - plain.item()) < 1e-12
    assert attribute_bce(logits, target, w, "none").item() == pytest.approx(plain.item())
    pos = nn.BCEWithLogitsLoss(pos_weight=w)(logits, target)
    assert attribute_bce(logits, target, w, "pos_weight").item() == pytest.approx(pos.item())
    with pytest.raises(ValueError, match="weight mode"):
        attribute_bce(logits, target, w, "focal")


# --- 4. threshold search --------------------------------------------------------------------------


def test_threshold_grid_has_100_values():
    grid = threshold_grid(0.01)
    assert grid.numel() == 100
    assert grid[0].item() == pytest.approx(0.01) and grid[-1].item() == 1.0
    assert torch.allclose(torch.diff(grid), torch.full((99,), 0.01, dtype=torch.float64))


def test_threshold_search_constructed_case():
    g = torch.Generator().manual_seed(0)
    n, L = 400, 3
    target = (torch.rand(n, L, generator=g) < 0.3).float()
    pos = 0.6 + 0.1 * torch.rand(n, L, generator=g)
    neg = 0.2 + 0.095 * torch.rand(n, L, generator=g)
    probs = torch.where(target.bool(), pos, neg)
    taus, hamming = search_thresholds(probs, target, threshold_grid(0.01), chunk_size=37)
    # zero errors for tau in (max neg, min pos] = (0.295, 0.6]: the smallest grid value is 0.30
    assert torch.allclose(taus, torch.full((L,), 0.30, dtype=torch.float64))
    assert torch.equal(hamming, torch.zeros(L, dtype=torch.float64))


def test_threshold_search_against_brute_force_and_ties():
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(300, 6, generator=g)
    target = (torch.rand(300, 6, generator=g) < probs).float()  # calibrated, noisy
    grid = threshold_grid(0.01)
    taus, hamming = search_thresholds(probs, target, grid, chunk_size=64)
    for j in range(6):
        errs = [((probs[:, j].double() >= t) != target[:, j].bool()).double().mean() for t in grid]
        errs = torch.stack(errs)
        first = int(torch.nonzero(errs == errs.min())[0])
        assert taus[j].item() == grid[first].item()
        assert hamming[j].item() == pytest.approx(errs.min().item())
        at_half = ((probs[:, j] >= 0.5) != target[:, j].bool()).double().mean().item()
        assert hamming[j].item() <= at_half + 1e-12
    # all-negative column, scores <= 0.5: every tau above 0.5 is perfect; ties -> smallest, 0.51
    t, h = search_thresholds(torch.tensor([[0.5], [0.1]]), torch.zeros(2, 1), grid)
    assert t.item() == pytest.approx(0.51) and h.item() == 0.0


# --- module: setup, learning on the synthetic faces, FFHQ labels, checkpoint round trip -----------


def _datamodule(root, image_size=32, batch_size=32, randaugment=True):
    from datamodules.celeba import CelebADataModule
    from datamodules.ffhq import FFHQDataModule
    from datamodules.label_transfer import LabelTransferDataModule

    common = {"image_size": image_size, "batch_size": batch_size, "num_workers": 0}
    source = CelebADataModule(root=str(root / "celeba"), randaugment=randaugment, **common)
    target = FFHQDataModule(root=str(root / "ffhq"), framing="celeba", **common)
    return LabelTransferDataModule(source, target)


def _trainer(root_dir, max_epochs, callbacks=(), **kwargs):
    from lightning import Trainer

    return Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=False,
        default_root_dir=str(root_dir),
        callbacks=list(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _classifier(**kwargs):
    from lightning_modules.face_attributes import FaceAttributeClassifier

    args = {"model_name": "resnet10t", "model_kwargs": TINY_NET, "lr": 3e-3, "warmup_epochs": 0.5}
    return FaceAttributeClassifier(**{**args, **kwargs})


def test_setup_rejects_attribute_count_mismatch(synthetic_faces_root, tmp_path):
    model = _classifier(num_attributes=39)
    trainer = _trainer(tmp_path, 1, limit_train_batches=1, limit_val_batches=0)
    with pytest.raises(ValueError, match="num_attributes=39 but .* has 40"):
        trainer.fit(model, datamodule=_datamodule(synthetic_faces_root))


def _ffhq_truth(root) -> dict[str, dict[str, str]]:
    """FFHQ sidecar rows keyed by the FFHQ DataModule's image id (``"00042"``)."""
    from pathlib import PurePosixPath

    with open(root / "ffhq" / "synthetic_factors.csv", newline="") as f:
        return {PurePosixPath(r["image_id"]).stem: r for r in csv.DictReader(f)}


def _fit_test_predict(root, out, epochs, image_size, batch_size, randaugment, net):
    """Fit -> test (best checkpoint, threshold search) -> predict FFHQ, like `make experiment`."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: extra threads only oversubscribe a shared CPU
    try:
        return _run_stages(root, out, epochs, image_size, batch_size, randaugment, net)
    finally:
        torch.set_num_threads(threads)


def _run_stages(root, out, epochs, image_size, batch_size, randaugment, net):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from callbacks.auroc import LogAUROC
    from lightning_modules.face_attributes.label_writer import WriteAttributeLabels

    auroc = LogAUROC(stages=["test"], plot=False, csv=False)
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor="val/hamming", mode="min")
    writer = WriteAttributeLabels(output_dir=str(out / "labels"))
    trainer = _trainer(out, epochs, [auroc, checkpoint, writer])
    model = _classifier(model_kwargs=net)
    data = _datamodule(root, image_size, batch_size, randaugment)
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, ckpt_path="best", weights_only=True, verbose=False)
    # as `make experiment` does: predict with the tested weights and their tuned thresholds
    trainer.predict(model, datamodule=data, return_predictions=False)
    return {"model": model, "auroc": auroc.last["test"], "out": out, "data": data,
            "ckpt": checkpoint.best_model_path, "root": root}  # fmt: skip


def _auroc_groups(auroc: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(rendered, negative controls) AUROCs, undefined ones (single-class test set) left out."""
    from datamodules.synthetic.face_factors import NEGATIVE_CONTROLS, RENDERED_ATTRIBUTES

    rendered = {n: auroc[n] for n in RENDERED_ATTRIBUTES if auroc[n] == auroc[n]}
    controls = {n: auroc[n] for n in NEGATIVE_CONTROLS if auroc[n] == auroc[n]}
    assert len(rendered) >= 20 and len(controls) >= 12
    return rendered, controls


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def trained(synthetic_faces_root, tmp_path_factory):
    """Tiny preset (264 train / 66 test images), 48 px, 20 epochs: the fast learning run."""
    out = tmp_path_factory.mktemp("face_attributes_tiny")
    return _fit_test_predict(synthetic_faces_root, out, 20, 48, 16, False, TINY_NET)


def test_learns_rendered_attributes_not_controls(trained):
    """Spec 3, weaker tiny-preset bound: rendered attributes learned, controls at chance."""
    rendered, controls = _auroc_groups(trained["auroc"])
    assert _mean(rendered.values()) >= 0.85, rendered
    assert all(rendered[n] >= 0.9 for n in STRONG), rendered
    assert 0.4 <= _mean(controls.values()) <= 0.6, controls
    assert all(0.25 <= a <= 0.75 for a in controls.values()), controls  # 66 test images


def test_class_weights_from_training_part(trained):
    model, data = trained["model"], trained["data"]
    assert torch.allclose(model.class_weights, class_balance_weights(data.train_attributes))
    assert torch.allclose(model.train_prevalence, data.train_attributes.float().mean(0))


def test_thresholds_searched_on_test_split_and_saved(trained):
    """Spec 4 on the trained model: thresholds on the grid, file written, tuned HL <= HL at 0.5."""
    model, out = trained["model"], trained["out"]
    assert bool(model.thresholds_tuned)
    saved = json.loads((out / "thresholds.json").read_text())
    assert list(saved) == model.names() and len(saved) == 40
    grid = threshold_grid(0.01)
    for name, tau in zip(model.names(), model.thresholds.tolist(), strict=True):
        assert saved[name] == pytest.approx(tau, abs=1e-6)
        assert torch.isclose(grid, torch.tensor(tau, dtype=torch.float64), atol=1e-6).any()
    with open(out / "threshold_search.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["hamming_tuned"]) <= float(r["hamming_at_0.5"]) + 1e-9 for r in rows)
    for r in rows:  # spec 6's statistic: blank exactly where the test split has no positive
        mean = r["mean_prob_positive"]
        assert (mean == "") == (float(r["test_prevalence"]) == 0), r
        assert mean == "" or 0 <= float(mean) <= 1, r


def test_class_weight_study_table():
    from experiments.face_attributes.class_weight_study import RARE, summarize

    weighted = {n: 0.5 for n in RARE} | {"Blurry": 0.2}
    plain = {n: 0.3 for n in RARE}
    table = summarize(weighted, plain, list(RARE))
    assert "| Blurry | 0.05 | 0.200 | 0.300 | False |" in table
    assert f"on {len(RARE) - 1} of {len(RARE)} rare" in table


def _check_ffhq_labels(trained, min_accuracy: float | None) -> None:
    """Spec 5: soft labels (n, 40) in [0, 1]; hard labels parse as CelebA; salient accuracy."""
    from datamodules.formats.celeba import ATTRIBUTE_NAMES, read_attribute_table

    labels, truth = trained["out"] / "labels", _ffhq_truth(trained["root"])
    saved = torch.load(labels / "ffhq_labels.pt", weights_only=True)
    soft, ids = saved["soft"], saved["image_id"]
    assert soft.shape == (len(truth), 40) and sorted(ids) == sorted(truth)
    assert soft.min() >= 0 and soft.max() <= 1
    names, hard_names, hard = read_attribute_table(labels / "ffhq_hard_labels.txt")
    assert names == ids and hard_names == list(ATTRIBUTE_NAMES)
    assert torch.equal(hard, (soft >= saved["thresholds"]).to(torch.uint8))
    assert torch.equal(saved["thresholds"], trained["model"].thresholds)
    with open(labels / "ffhq_soft_labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_id", *ATTRIBUTE_NAMES] and len(rows) == len(ids) + 1
    assert float(rows[1][1]) == pytest.approx(soft[0, 0].item(), abs=1e-6)
    if min_accuracy is None:
        return
    for name in SALIENT:
        j = ATTRIBUTE_NAMES.index(name)
        expected = torch.tensor([int(truth[i][name]) for i in ids], dtype=torch.uint8)
        accuracy = (hard[:, j] == expected).float().mean().item()
        assert accuracy >= min_accuracy, (name, accuracy)


def test_ffhq_label_files(trained):
    _check_ffhq_labels(trained, min_accuracy=None)


def test_checkpoint_round_trip(trained):
    """load_from_checkpoint rebuilds the net without YAML; the file loads with weights_only."""
    from lightning_modules.face_attributes import FaceAttributeClassifier

    model, ckpt = trained["model"], trained["ckpt"]
    raw = torch.load(ckpt, weights_only=True)
    assert raw["attribute_names"] == model.names()
    restored = FaceAttributeClassifier.load_from_checkpoint(ckpt, weights_only=True)
    assert restored.names() == model.names()
    assert torch.equal(restored.class_weights, model.class_weights)
    assert not bool(restored.thresholds_tuned)  # the checkpoint was saved before the search
    images = torch.randn(3, 3, 32, 32)
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.allclose(restored(images), model(images), atol=1e-6)


@pytest.fixture(scope="module")
def trained_small(tmp_path_factory):
    """Preset small (6,017 images), 128 px, no RandAugment, 15 epochs, batch 32: synthetic.yaml."""
    from datamodules.synthetic.faces import write_synthetic_faces

    root = tmp_path_factory.mktemp("synthetic_faces_small")
    write_synthetic_faces(root, preset="small", seed=0, progress=False)
    out = tmp_path_factory.mktemp("face_attributes_small")
    return _fit_test_predict(root, out, SMALL_EPOCHS, 128, 32, False, SMALL_NET)


@pytest.mark.slow
def test_spec_auroc_bounds_on_small_preset(trained_small):
    """Spec 3 at the spec's scale: rendered mean >= 0.95, rare >= 0.9, controls at chance."""
    rendered, controls = _auroc_groups(trained_small["auroc"])
    assert all(0.35 <= a <= 0.65 for a in controls.values()), controls
    assert all(rendered[n] >= 0.9 for n in RARE), rendered
    assert _mean(rendered.values()) >= 0.95, rendered


@pytest.mark.slow
def test_spec_ffhq_accuracy_on_small_preset(trained_small):
    """Spec 5 at the spec's scale: hard-label accuracy >= 0.85 on the salient attributes."""
    _check_ffhq_labels(trained_small, min_accuracy=0.85)
