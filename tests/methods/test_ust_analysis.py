"""UST's analysis (``experiments/ust``): the spec's assertions T1-T5 on made-up images whose answer
is known (an oracle passes each, a guess fails it), the retrieval table on codes that identify the
items (recall 1, re-ranking identity), the paper-table CSV, and the whole analysis on a one-batch
run of the tiny twin (every file written, the untrained control recorded beside the model)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from quiet_trainer import cpu_trainer
from torch import nn
from ust_tiny import MODULE as TINY

from datamodules.viton import VitonDataModule
from experiments.ust import assertions
from experiments.ust.analyze import AnalysisOptions, run_analysis
from experiments.ust.paper_tables import PAPER, TableRow, write_tables
from experiments.ust.retrieval_table import retrieval_results
from experiments.ust.split_images import Images
from lightning_modules.components.lpips import LPIPS
from lightning_modules.ust import USTModule

N, H, W = 6, 64, 48  # AlexNet (LPIPS-Alex) needs at least ~63 px


def _images(seed: int = 0) -> Images:
    """N persons: a coloured background and a flat-coloured box of clothing (m_A); their items: the
    same colour on a white catalog with its own box (m_B)."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(N, 3, 1, 1, generator=g) * 1.6 - 0.8
    person = (torch.rand(N, 3, 1, 1, generator=g) * 2 - 1).expand(N, 3, H, W).clone()
    mask_a = torch.zeros(N, 1, H, W)
    mask_b = torch.zeros(N, 1, H, W)
    for i in range(N):
        mask_a[i, :, 16 + i % 3 : 52, 10 : 38 - i % 2] = 1
        mask_b[i, :, 8:56, 8:40] = 1
    image_a = person * (1 - mask_a) + colours * mask_a
    image_b = torch.ones(N, 3, H, W) * (1 - mask_b) + colours * mask_b
    return Images(
        {
            "image_a": image_a,
            "mask_a": mask_a,
            "context_a": image_a * (1 - mask_a),
            "masked_a": image_a * mask_a + (1 - mask_a),
            "image_b": image_b,
            "mask_b": mask_b,
        },
        [f"{i:06d}_0.jpg" for i in range(N)],
        [f"{i:06d}_1.jpg" for i in range(N)],
    )


def _translations(images: Images, take_off, try_on, order) -> assertions.Translations:
    return assertions.Translations(
        take_off=take_off,
        try_on=try_on,
        try_on_shuffled=images["image_a"] * (1 - images["mask_a"])
        + images["image_b"][order].mean(dim=(2, 3), keepdim=True) * images["mask_a"],
        try_on_other_person=images["image_a"][order],
        order=order,
    )


T = assertions.Thresholds()


def test_a_derangement_moves_every_row():
    for count in (2, 3, 10):
        order = assertions.derangement(count, seed=count)
        assert sorted(order.tolist()) == list(range(count))
        assert not (order == torch.arange(count)).any()
    with pytest.raises(ValueError, match="at least 2"):
        assertions.derangement(1)


def test_the_oracle_passes_t1_to_t4_and_guesses_fail():
    images = _images()
    order = assertions.derangement(N)
    oracle = _translations(images, images["image_b"], images["image_a"], order)
    mean_catalog = images["image_b"].mean(0, keepdim=True)
    for check in (
        assertions.check_t1(images, oracle, mean_catalog, T),
        assertions.check_t2(images, oracle, T),
        assertions.check_t3(images, oracle, T),
        assertions.check_t4(images, oracle, T),
    ):
        assert check["passed"], check
    grey = torch.zeros_like(images["image_b"])
    guess = _translations(images, mean_catalog.expand_as(grey), images["context_a"], order)
    t1 = assertions.check_t1(images, guess, mean_catalog, T)
    assert not t1["passed"] and t1["takeoff_ssim"] == pytest.approx(t1["mean_catalog_ssim"])
    without_guess = assertions.Thresholds(mean_catalog_guess=False)
    t1 = assertions.check_t1(images, guess, mean_catalog, without_guess)
    assert t1["threshold"] == pytest.approx(t1["wrong_item_ssim"] + without_guess.margin)
    assert not assertions.check_t2(images, _translations(images, grey, grey, order), T)["passed"]
    # a try-on that ignores the item (C_A, whatever the item): nothing changes inside m_A
    guess.try_on_shuffled = guess.try_on
    t3 = assertions.check_t3(images, guess, T)
    assert not t3["passed"] and t3["context_error"] == 0.0
    t4 = assertions.check_t4(images, guess, T)
    assert t4["iou_own_mask"] == 0.0 and not t4["passed"]


def test_t3_and_t4_read_the_context_outside_the_mask():
    images = _images()
    order = assertions.derangement(N)
    moved = images["image_a"].clone()
    moved[:, :, :4] = -moved[:, :, :4]  # the top rows (outside every m_A) changed
    out = _translations(images, images["image_b"], moved, order)
    t3 = assertions.check_t3(images, out, T)
    assert t3["context_error"] > T.context_error and not t3["passed"]
    assert assertions.check_t4(images, out, T)["iou_own_mask"] < 1.0


class Oracle(nn.Module):
    """Style code = the clothing's mean colour (what the twin's items differ in here); try-on
    paints the item's mean colour into m_A of the context."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def style_code(self, images, mask=None):
        inside = (images < 0.999).all(dim=1, keepdim=True).float() if mask is None else mask
        return (images * inside).sum(dim=(2, 3)) / inside.sum(dim=(2, 3))

    def try_on(self, items, mask, context):
        return context + self.style_code(items)[:, :, None, None] * mask


def test_retrieval_with_identifying_codes_and_the_rerank_identity():
    images = _images()
    torch.manual_seed(0)
    lpips = LPIPS("alex", random_trunk=True)
    found = retrieval_results(Oracle(), images, lpips, kappas=(1, 3))
    rows = found["rows"]
    assert rows["ours"]["recall"] == {1: 1.0, 5: 1.0, 20: 1.0, 50: 1.0}
    assert rows["ours"]["dim"] == 3 and rows["colour_histogram"]["dim"] == 128
    assert found["chance"][1] == pytest.approx(1 / N) and found["database_size"] == N
    assert found["rerank_equal_at_k_ge_kappa"]
    for kappa in (1, 3):  # re-ranked top kappa is a permutation of ours
        ours, reranked = found["rankings"]["ours"], found["rankings"][f"rerank_k{kappa}"]
        assert torch.equal(ours[:, kappa:], reranked[:, kappa:])
        assert torch.equal(ours[:, :kappa].sort(1).values, reranked[:, :kappa].sort(1).values)


def test_t5_on_cross_pairs_the_oracle_beats_a_random_item():
    images = _images()
    order = assertions.derangement(N, seed=3)
    cross = Images(
        {
            **images.tensors,
            "image_b": images["image_b"][order],
            "target": images["context_a"]
            + Oracle().style_code(images["image_b"][order])[:, :, None, None] * images["mask_a"],
            "target_mask": images["mask_a"],
        },
        images.persons,
        [images.items[i] for i in order],
    )
    check = assertions.check_t5(Oracle(), cross, T, seed=1)
    assert check["passed"] and check["cross_tryon_box_ssim"] == pytest.approx(100.0)


def test_tables_write_paper_beside_ours(tmp_path):
    rows = [
        TableRow("4.1", "Full model", "takeoff_ssim", 61.19, 55.5, "VITON (substitute)"),
        TableRow("4.1", "W/O Fit-in module", "tryon_roi_ssim", None, None, "VITON", "N/A"),
    ]
    (path,) = write_tables(rows, tmp_path)
    assert path.name == "table_4_1.csv"
    read = list(csv.DictReader(path.open()))
    assert read[0]["paper_value"] == "61.19" and read[0]["suite_value"] == "55.50"
    assert read[0]["paper_dataset"] == "FashionStyle" and read[1]["paper_value"] == ""
    assert PAPER["4.4"]["LPIPS-Alex (640K)"]["recall@1"] == 42.3


@pytest.fixture(scope="module")
def one_batch_run(tmp_path_factory, viton_twin_root):
    """A run folder as the CLI lays it out: config.yaml and checkpoints/last.ckpt of one batch."""
    base = tmp_path_factory.mktemp("ust")
    data_args = {
        "root": str(viton_twin_root),
        "synthetic": "tiny",
        "batch_size": 2,
        "eval_batch_size": 16,
        "num_workers": 0,
        "test_cross": True,
    }
    run = base / "runs" / "ust" / "synthetic_full" / "2026-01-01_00-00-00"
    torch.manual_seed(0)
    module = USTModule(**TINY)
    trainer = cpu_trainer(run, limit_train_batches=1, limit_val_batches=0, max_epochs=1)
    trainer.fit(module, datamodule=VitonDataModule(**data_args))
    (run / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    config = {
        "model": {"class_path": "lightning_modules.ust.module.USTModule", "init_args": TINY},
        "data": {"class_path": "datamodules.viton.VitonDataModule", "init_args": data_args},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return base / "runs"


def test_the_analysis_writes_every_table_figure_and_the_control(one_batch_run, tmp_path):
    options = AnalysisOptions(root=one_batch_run, out=tmp_path, device="cpu", progress=False)
    results = run_analysis(options)
    assert set(results["assertions"]) == {"T1", "T2", "T3", "T4", "T5", "T6"}
    assert set(results["control_untrained"]) == set(results["assertions"])
    for name in ("tryon", "takeoff", "tryon_matrix", "cross_tryon", "retrieval"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0, name
    tables = {p.name for p in (tmp_path / "tables").iterdir()}
    assert tables == {f"table_4_{n}.csv" for n in range(1, 6)}
    table_41 = list(csv.DictReader((tmp_path / "tables" / "table_4_1.csv").open()))
    ablation = [r for r in table_41 if r["method"] == "W/O Fit-in module"]
    assert "make experiment NAME=ust/synthetic_no_fit_in" in ablation[-1]["note"]
    assert {r["dataset"] for r in table_41} == {"VITON twin (substitute)"}
    evaluation = list(csv.DictReader((tmp_path / "evaluation.csv").open()))
    assert {r["assertion"] for r in evaluation} == {"T1", "T2", "T3", "T4", "T5", "T6"}
    assert {r["thresholds"] for r in evaluation} == {"spec", "cpu"}
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["random_trunks"] is True and saved["retrieval"]["queries"] > 0
