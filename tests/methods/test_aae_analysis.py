"""The disentangled AAE's evaluations: feature blocks, transfer, retrieval, the expression probe,
per-block verification, pose error, the probe heatmap, and one end-to-end run of
``experiments.disentangled_aae.analyze`` on tiny stage runs of the twin.

Values are checked against numbers worked out in comments, numpy brute force, sklearn's ROC-AUC
and plain loops, never against the function under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning import Trainer
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, default_collate
from torchmetrics.classification import MulticlassAUROC

from datamodules.disentangled_aae import DisentangledAAEDataModule
from datamodules.verification_pairs import VerificationPairs, verification_pairs
from experiments.disentangled_aae.analyze import main
from lightning_modules.disentangled_aae.block_verification import block_verification
from lightning_modules.disentangled_aae.expression_probe import (
    class_auroc,
    class_weights,
    expression_auc,
    fit_expression_probe,
)
from lightning_modules.disentangled_aae.factor_split import FactorSplit
from lightning_modules.disentangled_aae.feature_blocks import (
    TABLE2_BLOCKS,
    block_label,
    block_parts,
    feature_block,
)
from lightning_modules.disentangled_aae.figures import framed, probe_heatmap
from lightning_modules.disentangled_aae.module import DisentangledAAE
from lightning_modules.disentangled_aae.pixels import to_unit
from lightning_modules.disentangled_aae.pose_error import pose_mae_degrees
from lightning_modules.disentangled_aae.retrieval import nearest_neighbours, precision_at_k
from lightning_modules.disentangled_aae.transfer import (
    all_except,
    frontalise,
    transfer,
    transfer_rows,
)

SMALL = FactorSplit((1, 2, 1, 2))  # pose 0 | identity 1:3 | expression 3 | style 4:6


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- feature blocks ---------------------------------------------------------------------------


def test_blocks_read_the_paper_columns():
    f = torch.arange(99.0)[None]  # column j holds j
    split = FactorSplit()
    assert feature_block(f, split, "identity")[0].tolist() == list(range(3, 35))
    # f_-id = (f_p, f_e, f_s): columns 0-2 and 35-98, 67 wide
    minus_id = feature_block(f, split, "-identity")[0].tolist()
    assert minus_id == [0, 1, 2, *range(35, 99)] and len(minus_id) == 67
    # f_-e = (f_p, f_id, f_s): columns 0-34 and 67-98
    assert feature_block(f, split, "-expression")[0].tolist() == [*range(0, 35), *range(67, 99)]
    # a concatenation keeps the order written: style first, then pose
    assert feature_block(f, split, "style+pose")[0].tolist() == [*range(67, 99), 0, 1, 2]
    assert block_parts(split, "-pose") == ("identity", "expression", "style")
    labels = [block_label(b) for b in TABLE2_BLOCKS]
    assert labels == ["f_p", "f_e", "f_s", "f_-id", "f_id"]
    assert block_label("pose+identity") == "f_p+id"
    for bad in ("mood", "-mood", "pose+pose", ""):
        with pytest.raises(ValueError):
            feature_block(f, split, bad)


# --- transfer (Fig. 5) ------------------------------------------------------------------------


def test_transfer_rows_follow_fig5():
    source = torch.tensor([[1.0, 2, 3, 4, 5, 6]])  # p=1 | id=2,3 | e=4 | s=5,6
    target = torch.tensor([[-1.0, -2, -3, -4, -5, -6]])
    rows = transfer_rows(source, target, SMALL)
    expected = [  # written out by hand from the column layout above
        ("pose from source", [1, -2, -3, -4, -5, -6]),
        ("identity from source", [-1, 2, 3, -4, -5, -6]),
        ("expression from source", [-1, -2, -3, 4, -5, -6]),
        ("style from source", [-1, -2, -3, -4, 5, 6]),
        ("all but pose from source", [-1, 2, 3, 4, 5, 6]),
        ("all but identity from source", [1, -2, -3, 4, 5, 6]),
        ("all but expression from source", [1, 2, 3, -4, 5, 6]),
        ("all but style from source", [1, 2, 3, 4, -5, -6]),
    ]
    assert [title for title, _ in rows] == [title for title, _ in expected]
    for (_, got), (_, want) in zip(rows, expected, strict=True):
        assert got[0].tolist() == want
    # the inputs are left as they were
    assert source[0].tolist() == [1, 2, 3, 4, 5, 6]
    assert transfer(target, source, SMALL, "style")[0].tolist() == expected[3][1]
    assert all_except(source, target, SMALL, "pose")[0].tolist() == expected[4][1]
    assert frontalise(source, SMALL)[0].tolist() == [0, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="one shape"):
        transfer(target, source[:, :5].repeat(2, 1), SMALL, "pose")


def test_transfer_is_row_wise():
    source = torch.randn(3, 6, generator=_gen(0))
    target = torch.randn(3, 6, generator=_gen(1))
    out = transfer(target, source, SMALL, "identity")
    for i in range(3):  # row i takes row i's identity, nothing else moves
        assert torch.equal(out[i, 1:3], source[i, 1:3])
        assert torch.equal(out[i, [0, 3, 4, 5]], target[i, [0, 3, 4, 5]])


# --- retrieval (Fig. 4) -----------------------------------------------------------------------


def test_neighbours_by_hand_with_ties_and_exclusion():
    gallery = torch.tensor([[0.0], [1.0], [-1.0], [2.0], [0.0]])
    query = torch.tensor([[0.0]])
    # squared distances 0, 1, 1, 4, 0: ties go to the lower position
    assert nearest_neighbours(query, gallery, 5).tolist() == [[0, 4, 1, 2, 3]]
    # the query is gallery row 0: leaving it out
    assert nearest_neighbours(query, gallery, 3, exclude=torch.tensor([0])).tolist() == [[4, 1, 2]]
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(query, gallery, 5, exclude=torch.tensor([0]))


def test_neighbours_match_a_numpy_sort():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(60, 5))
    queries = gallery[[3, 17, 42, 59]] + 0.01 * rng.normal(size=(4, 5))
    own = np.array([3, 17, -1, 59])
    got = nearest_neighbours(
        torch.from_numpy(queries).float(),
        torch.from_numpy(gallery).float(),
        7,
        exclude=torch.from_numpy(own),
        chunk=3,  # two chunks
    )
    for q in range(4):  # brute force on exact differences
        d = ((gallery.astype(np.float32) - queries[q].astype(np.float32)) ** 2).sum(1)
        order = [i for i in np.argsort(d, kind="stable") if i != own[q]][:7]
        assert got[q].tolist() == order


def test_precision_at_k_by_hand():
    neighbours = torch.tensor([[1, 2, 3], [0, 2, 3], [4, 4, 0]])
    gallery_labels = torch.tensor([7, 7, 8, 7, 9])
    query_labels = torch.tensor([7, 8, 9])
    # query 0 (7): labels 7, 8, 7 -> 2/3; query 1 (8): 7, 8, 7 -> 1/3; query 2 (9): 9, 9, 7 -> 2/3
    got = precision_at_k(neighbours, query_labels, gallery_labels)
    torch.testing.assert_close(got, torch.tensor([2 / 3, 1 / 3, 2 / 3], dtype=torch.float64))


# --- expression probe (Table 3) ---------------------------------------------------------------


def test_class_weights_are_inverse_frequency():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    # N = 6, 3 classes present of 4: w_c = 6 / (3 N_c) -> 2/3, 2, 1, and 0 for the absent class 3
    torch.testing.assert_close(class_weights(labels, 4), torch.tensor([2 / 3, 2.0, 1.0, 0.0]))


def test_class_auroc_against_sklearn_and_torchmetrics():
    g = _gen(3)
    labels = torch.randint(0, 4, (200,), generator=g)
    scores = torch.softmax(
        torch.randn(200, 4, generator=g) + labels[:, None].eq(torch.arange(4)), 1
    )
    result = class_auroc(scores, labels, 4)
    assert torch.equal(result.predicted, torch.from_numpy(scores.numpy().argmax(1)))
    for c in range(4):
        want = roc_auc_score((labels == c).numpy(), scores[:, c].numpy())
        assert result.per_class[c].item() == pytest.approx(want, abs=1e-6)
    macro = MulticlassAUROC(num_classes=4, average="macro")(scores, labels)
    assert result.macro == pytest.approx(macro.item(), abs=1e-6)
    assert result.evaluated.tolist() == torch.bincount(labels, minlength=4).tolist()
    # class 3 without positives has no AUC; the macro mean is over classes 0-2
    kept = labels < 3
    partial = class_auroc(scores[kept], labels[kept], 4)
    assert math.isnan(partial.per_class[3].item())
    assert partial.macro == pytest.approx(partial.per_class[:3].mean().item())


def _clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four well separated Gaussian clusters in 8-d, unequal class sizes."""
    g = _gen(seed)
    labels = torch.multinomial(torch.tensor([0.4, 0.3, 0.2, 0.1]), n, True, generator=g)
    centres = 3.0 * torch.eye(4, 8)
    return centres[labels] + torch.randn(n, 8, generator=g), labels


def test_probe_learns_a_separable_problem_and_not_shuffled_labels():
    x_train, y_train = _clusters(2000, 0)
    x_test, y_test = _clusters(2000, 1)
    state = torch.get_rng_state()
    learned = expression_auc((x_train, y_train), (x_test, y_test), 4, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left alone
    assert learned.macro > 0.95 and bool((learned.per_class > 0.9).all())
    shuffled = y_train[torch.randperm(len(y_train), generator=_gen(9))]
    chance = expression_auc((x_train, shuffled), (x_test, y_test), 4, seed=0)
    assert abs(chance.macro - 0.5) < 0.06
    again = expression_auc((x_train, y_train), (x_test, y_test), 4, seed=0)
    torch.testing.assert_close(again.per_class, learned.per_class)  # seeded


def test_probe_architecture_is_the_spec_s():
    fitted = fit_expression_probe(*_clusters(100, 2), num_classes=4, epochs=1)
    layers = [type(m).__name__ for m in fitted.probe]
    assert layers == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    shapes = [tuple(m.weight.shape) for m in fitted.probe if hasattr(m, "weight")]
    assert shapes == [(200, 8), (200, 200), (4, 200)]
    assert fitted.probe[2].p == 0.2 and not fitted.probe.training


# --- verification per block (Table 2) ---------------------------------------------------------


def _codes(identities: torch.Tensor, seed: int) -> torch.Tensor:
    """f_id = a per-identity centre (+ small noise); f_p, f_e, f_s = noise unrelated to identity."""
    g = _gen(seed)
    centres = 4.0 * torch.randn(int(identities.max()) + 1, 2, generator=g)
    f = torch.randn(len(identities), 6, generator=g)
    f[:, 1:3] = centres[identities] + 0.1 * torch.randn(len(identities), 2, generator=g)
    return f


def test_table2_rows_separate_identity_only_on_f_id():
    fit_ids = torch.arange(40).repeat_interleave(6)
    test_ids = torch.arange(40, 80).repeat_interleave(6)
    fit_pairs = verification_pairs(fit_ids, 300, 300, seed=0)
    test_pairs = verification_pairs(test_ids - 40, 300, 300, seed=1)
    result = block_verification(
        _codes(fit_ids, 0), fit_pairs, _codes(test_ids - 40, 1), test_pairs, SMALL, TABLE2_BLOCKS
    )
    assert list(result) == list(TABLE2_BLOCKS)
    assert result["identity"].accuracy > 0.97
    for block in ("pose", "expression", "style", "-identity"):
        assert abs(result[block].accuracy - 0.5) < 0.1, block


def test_block_verification_by_hand():
    # one 1-d part: distances of the fitting pairs 0.1 (same), 0.2 (same), 0.9 (different) ->
    # t = (0.2 + 0.9) / 2 = 0.55; test distances 0.5 (same, right), 0.6 (same, wrong) -> 0.5
    split = FactorSplit((1,), ("identity",))
    fit = VerificationPairs(torch.tensor([[0, 1], [0, 2], [0, 3]]), torch.tensor([1, 1, 0]).bool())
    test = VerificationPairs(torch.tensor([[0, 1], [0, 2]]), torch.tensor([True, True]))
    result = block_verification(
        torch.tensor([[0.0], [0.1], [0.2], [0.9]]),
        fit,
        torch.tensor([[0.0], [0.5], [0.6]]),
        test,
        split,
        ["identity"],
    )
    assert result["identity"].threshold == pytest.approx(0.55)
    assert result["identity"].accuracy == 0.5


# --- pose error and figures -------------------------------------------------------------------


def test_pose_mae_in_degrees_by_hand():
    split = FactorSplit((3, 1), ("pose", "rest"))
    f = torch.tensor([[0.1, 0.0, -0.2, 7.0], [0.3, 0.1, 0.0, 7.0]])
    poses = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    # |errors| yaw 0.1, 0.2 -> 0.15 rad; pitch 0, 0.1 -> 0.05; roll 0.2, 0 -> 0.1; x 180 / pi
    want = torch.tensor([0.15, 0.05, 0.1], dtype=torch.float64) * 57.29577951308232
    torch.testing.assert_close(pose_mae_degrees(f, split, poses), want)
    with pytest.raises(ValueError, match="3 columns"):
        pose_mae_degrees(torch.zeros(2, 6), SMALL, torch.zeros(2, 1))


def test_probe_heatmap_and_unit_images():
    image = probe_heatmap(
        [[0.9, 0.5, None], [-0.2, 0.98, 0.6]], ["f_p", "f_id"], ["pose", "identity", "expr"], "t"
    )
    assert isinstance(image, Image.Image) and image.size[0] > 100
    with pytest.raises(ValueError, match="labels"):
        probe_heatmap([[0.1, 0.2]], ["f_p", "f_id"], ["a", "b"], "t")
    torch.testing.assert_close(
        to_unit(torch.tensor([-1.0, 0.0, 1.0, 3.0])), torch.tensor([0, 0.5, 1, 1])
    )


def test_framed_by_hand():
    image = torch.full((3, 2, 3), 0.5)
    out = framed(image, (1.0, 0.0, 0.25), width=1)
    assert out.shape == (3, 4, 5)
    torch.testing.assert_close(out[:, 1:3, 1:4], image)
    border = torch.ones(4, 5, dtype=torch.bool)
    border[1:3, 1:4] = False
    for channel, value in enumerate((1.0, 0.0, 0.25)):
        assert (out[channel][border] == value).all()
    with pytest.raises(ValueError, match="one colour value per channel"):
        framed(image, (1.0, 0.0))
    with pytest.raises(ValueError, match="width"):
        framed(image, (1.0, 0.0, 0.0), width=0)


# --- the analysis command on tiny stage runs --------------------------------------------------

TINY = dict(  # tests/methods/test_disentangled_aae.py's networks, with a small Phi
    image_size=32,
    encoder_channels=8,
    generator_channels=8,
    discriminator_channels=8,
    latent_hidden=32,
    phi_hidden=(32,),
    lr=1e-3,
    phi_lr=1e-3,
)
MODEL = "lightning_modules.disentangled_aae.module.DisentangledAAE"
DATA = "datamodules.disentangled_aae.DisentangledAAEDataModule"
NAMES = {
    "ae": "disentangled_aae/synthetic_ae",
    "disentangle": "disentangled_aae/synthetic_disentangle",
    "joint": "disentangled_aae/synthetic_joint",
}


def _fit(
    model: DisentangledAAE, loader: DisentangledAAEDataModule | DataLoader, tmp_path: Path
) -> Trainer:
    quiet = ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary")
    flags = dict.fromkeys(quiet, False)
    trainer = Trainer(accelerator="cpu", max_steps=2, default_root_dir=tmp_path, **flags)
    if isinstance(loader, DisentangledAAEDataModule):
        trainer.fit(model, datamodule=loader)
    else:
        trainer.fit(model, train_dataloaders=loader)
    return trainer


def _save_run(trainer: Trainer, root: Path, stage: str, data_args: dict) -> Path:
    """A finished run folder as the CLI leaves it: config.yaml and checkpoints/last.ckpt."""
    run_dir = root / NAMES[stage] / "2026-01-01_00-00-00"
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    config = {
        "model": {"class_path": MODEL, "init_args": {"stage": stage, **TINY}},
        "data": {"class_path": DATA, "init_args": data_args},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(config))))
    return run_dir


def _labelled_batches(data: DisentangledAAEDataModule) -> DataLoader:
    """Stage B / C batches of the identity source: the train split's images with pose and
    identity labels and ``source`` (main's DataModule does not serve them yet)."""

    def collate(items: list[dict]) -> dict:
        return default_collate(items) | {"source": ["identity"] * len(items)}

    generator = torch.Generator().manual_seed(0)
    return DataLoader(
        data.splits["train"], batch_size=16, shuffle=True, collate_fn=collate, generator=generator
    )


@pytest.fixture(scope="module")
def stage_runs(synthetic_faces_root, tmp_path_factory) -> Path:
    """Three tiny stage runs (2 steps each: A on images, B and C on identity batches, each
    starting from the stage before) under one run root."""
    root = tmp_path_factory.mktemp("aae_runs")
    data_args = {
        "root": str(synthetic_faces_root / "celeba"),
        "image_size": 32,
        "hist_eq": False,
        "batch_size": 16,
        "num_workers": 0,
    }
    data = DisentangledAAEDataModule(**data_args)
    torch.manual_seed(0)
    previous = DisentangledAAE(stage="ae", **TINY)
    _save_run(_fit(previous, data, root), root, "ae", data_args)
    data.setup("fit")
    for stage in ("disentangle", "joint"):
        model = DisentangledAAE(stage=stage, **TINY)
        model.load_state_dict(previous.state_dict())
        _save_run(_fit(model, _labelled_batches(data), root), root, stage, data_args)
        previous = model
    # a logged FID in the joint run's metrics.csv (the others have none: "n/a")
    metrics = root / NAMES["joint"] / "2026-01-01_00-00-00" / "metrics.csv"
    metrics.write_text("epoch,step,test/fid,val/rmse\n0,1,,3.0\n0,2,42.5,\n")
    return root


def test_analyze_writes_the_tables_and_figures(stage_runs, capsys):
    assert (
        main(["--root", str(stage_runs), "--no-progress", "--device", "cpu", "--batch-size", "32"])
        == 0
    )
    out = stage_runs / "analysis"
    results = json.loads((out / "analysis.json").read_text())
    data = DisentangledAAEDataModule(
        root=results["data"]["data_root"], image_size=32, hist_eq=False, num_workers=0
    )
    data.setup("test")
    test = data.splits["test"]
    images = torch.stack([test[i]["image"] for i in range(len(test))]).double()  # (60, 3, 32, 32)

    # Table 1: the mean image's RMSE recomputed in numpy; B's E and G are A's (frozen in B)
    module = DisentangledAAE.load_from_checkpoint(
        stage_runs / NAMES["ae"] / "2026-01-01_00-00-00" / "checkpoints" / "last.ckpt"
    ).eval()
    x, mean = images.numpy(), module.mean_image.double().numpy()
    want = np.sqrt((((x - mean) * 127.5) ** 2).reshape(len(x), -1).mean(1)).mean()
    table1 = results["table1"]
    assert table1["ae"]["rmse_mean_image"] == pytest.approx(want, rel=1e-5)
    assert table1["disentangle"]["rmse"] == pytest.approx(table1["ae"]["rmse"], rel=1e-5)
    assert table1["joint"]["rmse"] != pytest.approx(table1["ae"]["rmse"], rel=1e-5)  # C trains G
    assert table1["ae"]["fid"] is None and table1["joint"]["fid"] == 42.5

    # Table 2: the test split has 6 identities: 270 same pairs exist, fewer than 500, so 270 of
    # each kind are drawn (balanced)
    same_test = sum(
        int(a == b) for i, a in enumerate(test.identities) for b in test.identities[i + 1 :]
    )
    row = results["table2"]["joint"]
    assert row["pairs"]["test"] == {"same": same_test, "different": same_test}
    assert list(row["accuracy"]) == list(TABLE2_BLOCKS)
    assert all(0 <= v <= 1 for v in row["accuracy"].values())

    # pose MAE of B from its own codes, recomputed in numpy against the fitted poses
    joint = DisentangledAAE.load_from_checkpoint(
        stage_runs / NAMES["joint"] / "2026-01-01_00-00-00" / "checkpoints" / "last.ckpt"
    ).eval()
    with torch.no_grad():
        f_p = joint.factors(images.float())[:, :3].double().numpy()
    mae = np.abs(f_p - test.poses.double().numpy()).mean(0) * 180 / np.pi
    got = results["pose_mae_deg"]["joint"]
    assert [got["yaw"], got["pitch"], got["roll"]] == pytest.approx(mae.tolist(), rel=1e-4)

    # Table 3 and retrieval: every block, numbers in range
    for stage in ("disentangle", "joint"):
        rows = results["table3"][stage]["rows"]
        assert list(rows) == ["pose", "identity", "style", "-expression", "expression"]
        assert all(r["macro"] is None or 0 <= r["macro"] <= 1 for r in rows.values())
        precision = results["retrieval"][stage]["identity_precision_at_k"]
        assert all(0 <= v <= 1 for v in precision.values())

    # Fig. 5's pairs: 6 pairs, 12 distinct images, source and target of different identities
    pairs = results["transfer"]["joint"]["pairs"]
    assert len(pairs) == 6 and len({i for pair in pairs for i in pair}) == 12
    assert all(test.identities[s] != test.identities[t] for s, t in pairs)
    # Fig. 6: ten distinct test images and the probe's accuracy over the whole test split
    for stage in ("disentangle", "joint"):
        shown = results["fig6"][stage]
        assert len(set(shown["rows"])) == 10 and 0 <= shown["accuracy"] <= 1
    names = [
        "fig3_reconstructions.png",
        "samples.png",
        "interpolations.png",
        *(
            f"{fig}_{s}.png"
            for s in ("disentangle", "joint")
            for fig in ("fig4_retrieval", "fig5_transfer", "fig6_expression", "probe_matrix")
        ),
    ]
    for name in names:
        assert Image.open(out / name).size[0] > 100, name
    report = (out / "analysis.md").read_text()
    for text in (
        "[SUBST] Pairs of CelebA identities",
        "[SUBST] Pseudo labels",
        "[SUBST] Fitted poses",
        "80.3",
        "22.87",
        "CelebA (joint)",
        "n/a",
        "Fig. 6: the f_e probe's class accuracy on the test split: disentangle",
    ):
        assert text in report, text
    assert "Note: the test split holds 270 distinct same-identity" in report
    assert "Wrote analysis.json" in capsys.readouterr().out


def test_analyze_refuses_missing_runs(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "--no-progress"]) == 2
    assert "--ae disentangled_aae/synthetic_ae" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--interpolation-steps", "1", "--interpolation-steps must be >= 2"),
        ("--expression-count", "0", "--expression-count must be >= 1"),
    ],
)
def test_analyze_refuses_bad_counts(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path), flag, value])
    assert message in capsys.readouterr().err
