"""VEBI's stages as ``make experiment NAME=vebi/mnist`` chains them, on the MNIST twin (1,797
real handwritten digits in the IDX format), cut to a few batches: the classifier, the response
stage (x of every digit equals ``response_vectors`` of the trained F) and the analysis (its
files, its controls)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from datamodules.synthetic.mnist import write_synthetic_mnist
from experiments.__main__ import main
from experiments.run_dirs import newest_run_dir
from experiments.stage_runs import find_stage_run
from experiments.vebi.analyze import AnalysisOptions, run_analysis
from lightning_modules.vebi.responses import ResponseIndex, response_vectors

pytestmark = pytest.mark.usefixtures("restore_global_state")


#: The CSV logger only: a W&B run in this process, even a disabled one, makes a later test's
#: offline W&B run write no files.
CSV_ONLY = (
    "--trainer.logger=[{class_path: experiments.loggers.ResumableCSVLogger, "
    "init_args: {save_dir: runs}}]"
)


def _run(*args: str) -> None:
    """``python -m experiments run`` in-process, logging to CSV only."""
    main(["run", "--config", "experiments/_base.yaml", *args, CSV_ONLY])


FAST = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.num_workers=0",
]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The classifier (1 epoch of 8 batches) and the response stage, in one run root."""
    twin = write_synthetic_mnist(tmp_path_factory.mktemp("mnist_twin"))
    root = tmp_path_factory.mktemp("vebi_runs")
    common = [f"--data.init_args.root={twin}", f"--run.root={root}", *FAST]
    for stage, extra in (
        ("classifier", ["--trainer.max_epochs=1", "--trainer.limit_train_batches=8"]),
        ("responses", []),
    ):
        _run("--config", f"experiments/vebi/mnist_{stage}.yaml", *common, *extra)
    return root


def test_the_response_stage_writes_x_of_the_trained_classifier(chain):
    classifier = find_stage_run(chain, "vebi/mnist_classifier", "-")
    net = classifier.load_module().net
    data = classifier.datamodule(num_workers=0)
    data.setup("test")
    run = newest_run_dir(chain, "vebi/mnist_responses", "responses_test.pt")
    stored = torch.load(run / "responses_test.pt", weights_only=True)
    test = data.splits["test"]
    assert stored["image_id"] == [str(int(r)) for r in test.rows]
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    index = ResponseIndex.of(net)
    x, logits = response_vectors(net, images, index)
    torch.testing.assert_close(stored["x"], x)
    assert torch.equal(stored["prediction"], logits.argmax(1))
    assert torch.equal(stored["label"], test.labels[test.rows])
    assert [layer["width"] for layer in stored["layers"]] == [20, 50, 500]


def test_the_analysis_writes_its_tables_and_runs_its_controls(chain, tmp_path):
    options = AnalysisOptions(root=chain, out=tmp_path / "trained", draws=3, progress=False)
    results = run_analysis(options)
    (run,) = results["runs"].values()
    assert run["responses"].endswith("responses_train.pt")
    assert set(results["assertions"]) == {"precondition", "ablation"}
    assert set(results["mca"]) == {"original", "all", "only_conv"} | {
        f"random_{pool}_{d}" for pool in ("all", "only_conv") for d in range(3)
    }
    counts = list(csv.DictReader((tmp_path / "trained" / "feature_counts.csv").open()))
    totals = {r["pool"]: r for r in counts if r["layer"] == "total"}
    assert int(totals["all"]["selected"]) == run["selected"]["all"] > 0
    assert {r["run"] for r in counts} == {"vebi/mnist_classifier"}
    assert totals["all"]["paper"] == "92" and totals["only_conv"]["paper"] == "101"
    bars = list(csv.DictReader((tmp_path / "trained" / "fig_3_4.csv").open()))
    assert [r["set"] for r in bars] == [
        "original",
        "all",
        "only_conv",
        "random_all",
        "random_only_conv",
    ]
    assert (tmp_path / "trained" / "fig_3_4.png").stat().st_size > 0
    saved = torch.load(tmp_path / "trained" / "relevant_filters.pt", weights_only=True)
    assert saved["runs"]["vebi/mnist_classifier"]["weights_all"].shape == (570, 10)
    assert json.loads((tmp_path / "trained" / "analysis.json").read_text())["mca"]
    untrained = AnalysisOptions(
        root=chain, out=tmp_path / "untrained", draws=2, untrained=True, progress=False
    )
    control = run_analysis(untrained)
    assert control["runs"]["vebi/mnist_classifier"]["responses"] == "computed by the analysis"
    assert control["mca"]["original"] < results["mca"]["original"]


@pytest.fixture(scope="module")
def flower_runs(tmp_path_factory):
    """Two folds of the an8Flower classifier (the tiny twin, 2 epochs each) in a run root, named
    as the vebi/an8flower_single_6c pipeline names them."""
    root = tmp_path_factory.mktemp("flower_runs")
    data = tmp_path_factory.mktemp("an8flower")
    config = "experiments/vebi/an8flower_single_6c_classifier.yaml"
    flags = [f"--data.init_args.root={data}", "--data.init_args.synthetic=tiny", *FAST]
    flags += [f"--run.root={root}", "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1"]
    for fold in (0, 1):
        name = f"--run.name=vebi/an8flower_single_6c_fold{fold}_classifier"
        _run("--config", config, *flags, f"--data.init_args.fold={fold}", name)
    return root


def test_the_analysis_on_the_flower_twin_writes_table_3_1(flower_runs, tmp_path):
    options = AnalysisOptions(
        root=flower_runs, prefix="vebi/an8flower_single_6c", out=tmp_path, draws=2, top_k=2,
        folds=2, progress=False,
    )  # fmt: skip
    results = run_analysis(options)
    assert list(results["runs"]) == [f"vebi/an8flower_single_6c_fold{k}_classifier" for k in (0, 1)]
    for run in results["runs"].values():
        assert run["responses"] == "computed by the analysis"  # no responses stage here
    assert {"localization", "artefacts"} <= set(results["assertions"])
    rows = list(csv.DictReader((tmp_path / "table_3_1.csv").open()))
    assert [r["method"] for r in rows] == [
        "upsampled_activation",
        "deconv_gb",
        "gradcam",
        "guided_gradcam",
        "gradcam_pp",
        "guided_gradcam_pp",
        "ours",
        "random",
        "centred_gaussian",
    ]
    ours = next(r for r in rows if r["method"] == "ours")
    assert (ours["paper_mean"], ours["paper_std"], ours["folds"]) == ("22.5", "0.82", "2")
    per_fold = [run["localization"]["ours"] for run in results["runs"].values()]
    assert float(ours["suite_mean"]) == pytest.approx(np.mean(per_fold), abs=0.006)
    assert float(ours["suite_std"]) == pytest.approx(np.std(per_fold, ddof=1), abs=0.006)
    mca = [run["mca"]["original"] for run in results["runs"].values()]
    assert results["mca"]["original"] == pytest.approx(np.mean(mca))
    wins = results["localization"]["artefact_wins"]  # NaN: no relevant filter behind a stride
    assert math.isnan(wins) or 0.0 <= wins <= 1.0
    assert results["assertions"]["artefacts"]["passed"] == (wins >= 0.9)
    folds = [run["localization"] for run in results["runs"].values()]
    compared = sum(fold["artefact_images"] for fold in folds)
    assert results["localization"]["artefact_images"] == compared
    if compared:  # pooled over images, not a mean of the folds' fractions
        won = sum(f["artefact_wins"] * f["artefact_images"] for f in folds if f["artefact_images"])
        assert wins == pytest.approx(won / compared)
