"""The exemplar-SR analysis (``experiments/exemplar_sr``): the detail metrics against numpy hand
computations, H2-H6 on oracle numbers (the ground truth as output passes, bicubic fails), the
uniform-weights context manager, the Table 6.1 / Fig. 6.8 CSVs, and the whole analysis on
one-batch runs of the tiny exemplar twin (every file written, the controls recorded)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from exemplar_sr_tiny import MODULE as TINY_MODULE
from quiet_trainer import cpu_trainer
from torch.utils.data import Subset

from datamodules.exemplar_sr import CelebAExemplarDataModule
from experiments.exemplar_sr import assertions
from experiments.exemplar_sr.analyze import AnalysisOptions, main, run_analysis
from experiments.exemplar_sr.detail import (
    detail_ncc,
    detail_part,
    occluded_weight,
    region_mask,
    region_psnr,
)
from experiments.exemplar_sr.evaluate import evaluate
from experiments.exemplar_sr.exemplar_swaps import (
    CROP_TOLERANCE,
    ForeignExemplars,
    SwappedDetail,
    check_crop,
    read_render_codes,
    twin_seed,
)
from experiments.exemplar_sr.paper_tables import (
    PAPER_6_1,
    Fig68Row,
    Table61Row,
    write_fig_6_8,
    write_table_6_1,
)
from experiments.exemplar_sr.runs import OPTIONAL
from lightning_modules.exemplar_sr import ExemplarSRModule, uniform_weights
from lightning_modules.exemplar_sr.pwave import PWAVE

TINY = TINY_MODULE | {"lambda_adv": 0.0}  # no critic
S = 32
BOXES = torch.tensor([[[4, 8, 8, 4], [20, 0, 4, 16]], [[0, 0, 8, 8], [16, 16, 8, 8]]])


def _np_mask(boxes: torch.Tensor, size: int) -> np.ndarray:
    mask = np.zeros((len(boxes), size, size), bool)
    for i, image_boxes in enumerate(boxes.tolist()):
        for top, left, h, w in image_boxes:
            mask[i, top : top + h, left : left + w] = True
    return mask


def test_region_mask_and_region_psnr_match_numpy():
    g = torch.Generator().manual_seed(0)
    sr, hr = torch.rand(2, 3, S, S, generator=g), torch.rand(2, 3, S, S, generator=g)
    mask = _np_mask(BOXES, S)
    assert np.array_equal(region_mask(BOXES, S)[:, 0].numpy().astype(bool), mask)
    for i in range(2):
        diff = (sr[i] - hr[i]).numpy()[:, mask[i]]
        expected = 10 * np.log10(1 / np.mean(diff**2))
        assert region_psnr(sr, hr, BOXES)[i].item() == pytest.approx(expected, rel=1e-5)
    # pixels outside the boxes do not count
    outside = torch.from_numpy(~mask).unsqueeze(1).expand_as(hr)
    assert region_psnr(torch.where(outside, sr, hr), hr, BOXES).isinf().all()


def test_detail_part_and_ncc_match_numpy():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, S, S, generator=g), torch.rand(2, 3, S, S, generator=g)
    x = a.numpy()
    tiles = x.reshape(2, 3, S // 4, 4, S // 4, 4).mean(axis=(3, 5))
    expected = x - np.repeat(np.repeat(tiles, 4, axis=2), 4, axis=3)
    assert np.allclose(detail_part(a).numpy(), expected, atol=1e-6)
    mask = _np_mask(BOXES, S)
    da, db = detail_part(a).numpy(), detail_part(b).numpy()
    for i in range(2):
        u, v = da[i][:, mask[i]].ravel(), db[i][:, mask[i]].ravel()
        u, v = u - u.mean(), v - v.mean()
        ncc = (u * v).sum() / np.sqrt((u**2).sum() * (v**2).sum())
        assert detail_ncc(a, b, BOXES)[i].item() == pytest.approx(ncc, abs=1e-5)
    assert torch.allclose(detail_ncc(a, a, BOXES), torch.ones(2))
    assert torch.allclose(detail_ncc(a, -a, BOXES), -torch.ones(2))
    # a tile-constant image has no detail: NCC 0 (not NaN)
    flat = F.interpolate(torch.rand(2, 3, S // 4, S // 4, generator=g), scale_factor=4)
    assert torch.equal(detail_ncc(flat, a, BOXES), torch.zeros(2))


def test_occluded_weight_is_the_mean_upsampled_weight_on_occluded_boxes():
    g = torch.Generator().manual_seed(2)
    weights = torch.rand(2, 3, 1, 4, 4, generator=g)
    regions = torch.tensor([[0, 0, 8, 8], [16, 8, 16, 8]]).expand(2, 3, 2, 4)
    occluded = torch.tensor([[[True, False], [False, True], [False, False]], [[False, False]] * 3])
    up = np.repeat(np.repeat(weights.numpy()[:, :, 0], 8, axis=2), 8, axis=3)  # (2, 3, 32, 32)
    values = [up[0, 0, 0:8, 0:8].ravel(), up[0, 1, 16:32, 8:16].ravel()]
    expected = np.concatenate(values).mean()
    got = occluded_weight(weights, regions, occluded, S)
    assert got[0].item() == pytest.approx(expected, rel=1e-6)
    assert got[1].isnan()  # nothing occluded
    with pytest.raises(ValueError, match="disagree"):
        occluded_weight(weights, regions[:, :2], occluded, S)


def _summary(sr, hr, other=None) -> dict[str, float]:
    """The numbers ``evaluate`` reports, for made-up outputs."""
    from callbacks.image_quality.psnr import psnr
    from callbacks.image_quality.ssim import ssim

    out = {
        "psnr": psnr(sr, hr).mean().item(),
        "ssim": ssim(sr, hr).mean().item(),
        "detail_psnr": region_psnr(sr, hr, BOXES).mean().item(),
    }
    if other is not None:
        out["ncc_other"] = detail_ncc(sr, other, BOXES).mean().item()
        out["ncc_true"] = detail_ncc(sr, hr, BOXES).mean().item()
    return out


def _faces():
    """Smooth faces with a +-0.2 zero-sum-tile checker in the boxes, and their bicubic x4."""
    g = torch.Generator().manual_seed(3)
    base = F.interpolate(torch.rand(2, 3, 4, 4, generator=g) * 0.6 + 0.2, size=S, mode="bilinear")
    checker = (torch.arange(S)[:, None] + torch.arange(S)[None]) % 2 * 2 - 1.0
    hr = (base + 0.2 * checker * region_mask(BOXES, S)).clamp(0, 1)
    other = (base + 0.2 * checker.T.flip(0) * region_mask(BOXES, S)).clamp(0, 1)
    bicubic = F.interpolate(F.avg_pool2d(hr, 4), scale_factor=4, mode="bicubic").clamp(0, 1)
    return hr, other, bicubic


def test_the_oracle_passes_h2_to_h6_and_bicubic_fails():
    hr, other, bicubic = _faces()
    t = assertions.SPEC
    oracle, base = _summary(hr, hr), _summary(bicubic, hr)
    assert assertions.check_h2(oracle, base, t)["passed"]
    assert not assertions.check_h2(base, base, t)["passed"]
    h3 = assertions.check_h3(oracle | {"psnr_bicubic": base["psnr"] - 1}, base)
    assert h3["passed"]
    assert not assertions.check_h3(base | {"psnr_bicubic": base["psnr"]}, base)["passed"]
    follows = _summary(other, hr, other)  # the output carries the swapped-in detail
    assert follows["ncc_other"] == pytest.approx(1.0)
    assert assertions.check_h4(oracle, follows, t)["passed"]
    ignores = _summary(hr, hr, other)  # the output keeps its own detail
    assert not assertions.check_h4(oracle, ignores, t)["passed"]
    good = oracle | {"occluded_weight_1": 0.05, "occluded_weight_2": 0.1}
    assert assertions.check_h5(good, base, 3, t)["passed"]
    uniform = good | {"occluded_weight_1": 1 / 3}
    h5 = assertions.check_h5(uniform, base, 3, t)
    assert not h5["passed"] and h5["threshold_occluded_weight"] == pytest.approx(0.5 / 3)
    assert not assertions.check_h5(good | {"occluded_weight_2": float("nan")}, base, 3, t)["passed"]
    assert assertions.check_occluded_weights(good, 3, t)["passed"]
    assert not assertions.check_occluded_weights(uniform, 3, t)["passed"]
    close = good | {"detail_psnr": 25.0}  # the weights pass, the gain over average does not
    assert not assertions.check_h5(close, base | {"detail_psnr": 24.5}, 3, t)["passed"]
    assert assertions.check_h6({1: 20.0, 2: 20.5, 3: 20.4, 4: 21.0, 5: 21.2}, t)["passed"]
    dips = assertions.check_h6({1: 20.0, 2: 21.5, 3: 21.0, 4: 21.2, 5: 21.3}, t)
    assert not dips["passed"] and dips["worst_step"] == pytest.approx(-0.5)
    assert not assertions.check_h6({m: 20.0 + 0.1 * m for m in range(1, 6)}, t)["passed"]


def test_uniform_weights_forces_one_over_m_and_restores_fusion():
    torch.manual_seed(0)
    module = ExemplarSRModule(**TINY).eval()
    lr, exemplars = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 3, 128, 128) * 2 - 1
    learned, (w1, _) = module.hallucinate(lr, exemplars)
    assert not torch.allclose(w1, torch.full_like(w1, 1 / 3))
    with uniform_weights(module) as same:
        assert same is module
        forced, weights = module.hallucinate(lr, exemplars)
    for w in weights:
        assert torch.allclose(w, torch.full_like(w, 1 / 3))
    assert module.generator.pwave.fusion == "pwave"
    assert torch.equal(module.hallucinate(lr, exemplars)[0], learned)
    assert not torch.allclose(forced, learned)
    average = ExemplarSRModule(**(TINY | {"fusion": "average"})).eval()
    average.load_state_dict(module.state_dict(), strict=False)  # the same trunk, no WNNs
    assert torch.allclose(average.hallucinate(lr, exemplars)[0], forced, atol=1e-6)
    with pytest.raises(RuntimeError), uniform_weights(module.generator.pwave):
        raise RuntimeError("restored after an error")
    assert module.generator.pwave.fusion == "pwave"
    assert isinstance(module.generator.pwave, PWAVE)
    with pytest.raises(ValueError, match="holds no PWAVE"), uniform_weights(torch.nn.Linear(1, 1)):
        pass


def test_table_6_1_and_fig_6_8_csv(tmp_path):
    rows = [
        Table61Row("Bicubic", 8, "psnr", 20.72, 22.04, 21.123, "twin"),
        Table61Row("Ours (L1 only, text)", 8, "ssim", 0.69, None, None, "", "not run"),
    ]
    path = write_table_6_1(rows, tmp_path / "tables" / "table_6_1.csv")
    read = list(csv.DictReader(path.open()))
    assert read[0]["paper_celeba"] == "20.72" and read[0]["suite_value"] == "21.12"
    assert read[0]["paper_webface"] == "22.04 (not reproduced)"
    assert read[1]["paper_webface"] == "" and read[1]["suite_value"] == ""
    assert PAPER_6_1[("Ours (L1 only, text)", 8)] == {"ssim": (0.69, None), "psnr": (22.35, None)}
    assert PAPER_6_1[("Ours (w/ Discriminator)", 16)]["psnr"] == (19.13, 19.42)
    assert len(PAPER_6_1) == 7
    bars = [Fig68Row(8, 2, "pwave", 0.51234, 20.456, "own model", "x")]
    read = list(csv.DictReader(write_fig_6_8(bars, tmp_path / "fig_6_8.csv").open()))
    assert read == [
        {
            "scale": "8",
            "m": "2",
            "fusion": "pwave",
            "ssim": "0.5123",
            "psnr": "20.46",
            "how": "own model",
            "run": "x",
        }
    ]


@pytest.fixture(scope="module")
def twin_test(exemplar_faces_root):
    """The tiny twin's DataModule (m = 3) and its test split."""
    data = CelebAExemplarDataModule(root=str(exemplar_faces_root), num_workers=0)
    data.setup("test")
    return data, data.splits["test"]


def test_swapped_detail_renders_the_target_with_another_identitys_detail(twin_test):
    data, split = twin_test
    codes, seed = read_render_codes(data.root), twin_seed(data.root, default=-1)
    assert seed == 0 and check_crop(split, codes, seed) < CROP_TOLERANCE
    swapped = SwappedDetail(split, codes, seed, seed=0)
    names = split.faces.names
    assert all(swapped.other_detail[i] != codes[n].detail_id for i, n in enumerate(names))
    item, true = swapped[0], split[0]
    assert item["image_id"] == true["image_id"] and torch.equal(item["image_hr"], true["image_hr"])
    regions = true["exemplar_regions"]  # (m, R, 4), the same boxes for every image of the twin
    inside = region_mask(regions, 128).bool().expand(-1, 3, -1, -1)
    difference = (item["exemplars"] - true["exemplars"]).abs()
    assert difference[~inside].mean() < 2 * CROP_TOLERANCE  # the coarse look and nuisance kept
    assert difference[inside].mean() > 4 * difference[~inside].mean()  # the detail changed
    other = item["pattern_other"].expand_as(item["exemplars"])
    assert (detail_ncc(item["exemplars"], other, regions) > 0.95).all()
    assert not item["exemplar_occluded"].any()  # rendered clean


def test_foreign_exemplars_come_from_another_identity_than_the_target_and_h4(twin_test):
    data, split = twin_test
    codes = read_render_codes(data.root)
    foreign = ForeignExemplars(split, split, seed=0)
    swapped = SwappedDetail(split, codes, 0, seed=0)
    identities = split.faces.identities
    for i in range(len(split)):
        donor = foreign.donor[i]
        assert identities[donor] != identities[i]
        assert codes[split.faces.names[donor]].detail_id != swapped.other_detail[i]
    item = foreign[0]
    assert item["image_id"] == split[0]["image_id"]
    assert torch.equal(item["exemplars"], split[foreign.donor[0]]["exemplars"])


class CopyDetail(torch.nn.Module):
    """An oracle hallucinator: the bicubic upsample plus the exemplars' mean 4 x 4-tile detail
    (what a model that learned the twin would do); weights 1/m."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def bicubic(self, lr):
        return F.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False)

    def hallucinate(self, lr, exemplars):
        b, m, h = lr.shape[0], exemplars.shape[1], lr.shape[-1]
        sr = self.bicubic(lr)
        if m:
            sr = sr + detail_part(exemplars.mean(1))
        weights = tuple(lr.new_full((b, m, 1, s, s), 1 / max(m, 1)) for s in (h, 2 * h))
        return sr, weights


def test_an_exemplar_copying_oracle_passes_h2_h4_and_the_foreign_control_fails(twin_test):
    data, split = twin_test
    codes, rows = read_render_codes(data.root), range(12)
    oracle = CopyDetail()

    def summary(dataset, m=3):
        return evaluate(oracle, Subset(dataset, rows), m, progress=False).summary()

    true, m0 = summary(split), summary(split, m=0)
    swapped = summary(SwappedDetail(split, codes, 0, seed=0))
    foreign = summary(ForeignExemplars(SwappedDetail(split, codes, 0, seed=0), split, seed=0))
    t = assertions.SPEC
    assert assertions.check_h2(true, m0, t)["passed"]
    h4 = assertions.check_h4(true, swapped, t)
    assert h4["passed"] and h4["ncc_other"] > 0.9, h4
    assert foreign["detail_psnr"] < m0["detail_psnr"]  # a wrong pattern is worse than none
    assert not assertions.check_h4(foreign, foreign, t)["passed"]
    assert not assertions.check_h2(foreign, m0, t)["passed"]


#: The runs of the analysis test: suffix -> (model changes, data changes).
RUNS = {
    "pwave": ({}, {}),
    "m0": ({}, {}),
    "occluded_pwave": ({}, {"occlusion_p": 0.5, "min_clean": 1}),
    "occluded_average": ({"fusion": "average"}, {"occlusion_p": 0.5, "min_clean": 1}),
    "uniform1to5": ({}, {"train_m": "uniform1to5"}),
}


@pytest.fixture(scope="module")
def one_batch_runs(tmp_path_factory, exemplar_faces_root):
    """Run folders as the CLI lays them out: config.yaml and checkpoints/last.ckpt (one training
    batch for the PWAVE run, none for the others: the analysis only reads them)."""
    base = tmp_path_factory.mktemp("exemplar_sr") / "runs"
    for suffix, (model_changes, data_changes) in RUNS.items():
        data_args = {
            "root": str(exemplar_faces_root),
            "batch_size": 2,
            "eval_batch_size": 16,
            "num_workers": 0,
        } | data_changes
        model_args = TINY | model_changes
        run = base / "exemplar_sr" / f"synthetic_{suffix}" / "2026-01-01_00-00-00"
        torch.manual_seed(0)
        module = ExemplarSRModule(**model_args)
        # one training batch for the PWAVE run; the others are only read back (no batch)
        batches = 1 if suffix == "pwave" else 0
        trainer = cpu_trainer(run, limit_train_batches=batches, limit_val_batches=0)
        trainer.fit(module, datamodule=CelebAExemplarDataModule(**data_args))
        (run / "checkpoints").mkdir(parents=True)
        trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
        model_config = {k: list(v) if isinstance(v, tuple) else v for k, v in model_args.items()}
        config = {
            "model": {
                "class_path": "lightning_modules.exemplar_sr.module.ExemplarSRModule",
                "init_args": model_config,
            },
            "data": {
                "class_path": "datamodules.exemplar_sr.CelebAExemplarDataModule",
                "init_args": data_args,
            },
        }
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    return base


def test_the_analysis_writes_every_file_and_the_controls(one_batch_runs, tmp_path):
    options = AnalysisOptions(
        root=one_batch_runs, out=tmp_path, device="cpu", progress=False, rows=4, limit=6
    )
    results = run_analysis(options)
    assert set(results["assertions"]) == {"H2", "H3", "H4", "H5_weights", "H5", "H6"}
    assert set(results["controls"]) == {"foreign_exemplars", "uniform_weights"}
    for control in results["controls"].values():
        assert set(control) == {"H2", "H3", "H4", "H5_weights", "H5"}
    for name in ("hallucinations", "weights", "fusion_comparison", "fig_6_8"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0, name
    table = list(csv.DictReader((tmp_path / "tables" / "table_6_1.csv").open()))
    assert len(table) == 2 * len(PAPER_6_1)
    bicubic = [r for r in table if r["method"] == "Bicubic" and r["scale"] == "8"]
    assert all(r["suite_value"] and "twin" in r["dataset"] for r in bicubic)
    x16 = [r for r in table if r["scale"] == "16"]
    assert all(r["suite_value"] == "" for r in x16)
    assert any("make experiment NAME=exemplar_sr/synthetic_x16_pwave" in r["note"] for r in x16)
    bars = list(csv.DictReader((tmp_path / "fig_6_8.csv").open()))
    random_m = "model trained with m uniform in 1..5, evaluated at m"
    assert sum(r["how"] == random_m for r in bars) == 5
    hows = {(r["m"], r["fusion"]): r["how"] for r in bars if r["how"] != random_m}
    assert hows[("0", "pwave")] == "own model" and hows[("3", "pwave")] == "own model"
    assert hows[("2", "pwave")] == "model trained at m=3, evaluated at m"
    assert hows[("3", "average")] == "uniform weights at inference"
    evaluation = list(csv.DictReader((tmp_path / "evaluation.csv").open()))
    assertion_rows = [r for r in evaluation if r["section"] == "assertion"]
    assert {r["variant"] for r in assertion_rows} == {
        "trained",
        "foreign_exemplars",
        "uniform_weights",
    }
    assert {r["thresholds"] for r in assertion_rows} == {"spec", "cpu"}
    metrics = {(r["name"], r["variant"], r["quantity"]) for r in evaluation}
    assert ("pwave m=3", "foreign_exemplars", "detail_psnr") in metrics
    assert ("occluded_pwave m=3", "trained", "occluded_weight_1") in metrics
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert "exemplar_sr/synthetic_disc" in saved["missing_runs"]
    assert saved["random_trunks"] is True
    assert "H6" in (tmp_path / "analysis.md").read_text()
    assert any(
        "Eyeglasses" in note for note in saved["figure_notes"]
    )  # none in the tiny test split


def test_the_command_on_the_pwave_run_alone_names_the_missing_runs(one_batch_runs, tmp_path):
    out, alone = tmp_path / "out", tmp_path / "alone" / "exemplar_sr"
    alone.mkdir(parents=True)  # a root with the pwave run only: the others are under --root too
    (alone / "synthetic_pwave").symlink_to(one_batch_runs / "exemplar_sr" / "synthetic_pwave")
    argv = ["--root", str(alone.parent), "--ablation-root", str(tmp_path / "none")]
    argv += ["--out", str(out), "--device", "cpu", "--limit", "4", "--rows", "2", "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((out / "analysis.json").read_text())
    assert set(saved["assertions"]) == {"H4"}  # the only check without another run
    assert saved["not_checked"]["H2"].endswith("make experiment NAME=exemplar_sr/synthetic_m0")
    assert "synthetic_occluded_average" in saved["not_checked"]["H5"]
    assert "synthetic_occluded_pwave" in saved["not_checked"]["H5_weights"]
    assert set(saved["runs"]) == {"pwave"} and len(saved["missing_runs"]) == len(OPTIONAL)
    bars = list(csv.DictReader((out / "fig_6_8.csv").open()))
    assert [r["how"] for r in bars if r["m"] == "0"] == ["model trained at m=3, evaluated at m"]
    assert not (out / "fusion_comparison.png").exists()


def test_every_run_the_analysis_asks_for_has_its_yaml():
    """A missing optional run is reported with ``make experiment NAME=...``: that YAML exists."""
    experiments = Path(__file__).resolve().parents[2] / "experiments"
    for suffix in ("pwave", *OPTIONAL):
        assert (experiments / "exemplar_sr" / f"synthetic_{suffix}.yaml").is_file(), suffix
