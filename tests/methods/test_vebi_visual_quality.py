"""VEBI's visual-quality outputs of the analysis: the box-occlusion table, the dataset mean that
fills the patches, and the analysis with ``occlusion_images`` and ``average_images`` on a tiny
classifier of the MNIST twin (its box_occlusion.csv, average_images.pt and fig_3_5.png)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from datamodules.synthetic.mnist import write_synthetic_mnist
from experiments.__main__ import main
from experiments.vebi.analyze import AnalysisOptions, run_analysis
from experiments.vebi.visual_quality import dataset_mean, occlusion_study, write_box_occlusion
from lightning_modules.vebi.box_occlusion import box_occlusion
from lightning_modules.vebi.explanation import explain
from lightning_modules.vebi.nets import mnist_lenet
from lightning_modules.vebi.responses import ResponseIndex

pytestmark = pytest.mark.usefixtures("restore_global_state")

CSV_ONLY = (
    "--trainer.logger=[{class_path: experiments.loggers.ResumableCSVLogger, "
    "init_args: {save_dir: runs}}]"
)


def test_dataset_mean_is_the_per_channel_pixel_mean():
    images = torch.rand(7, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    dataset = [{"image": image} for image in images]
    torch.testing.assert_close(dataset_mean(dataset, batch_size=3), images.mean((0, 2, 3)))


def test_the_box_occlusion_table_lists_runs_their_mean_and_the_thesis(tmp_path):
    runs = {
        "fold0": {"ours": 30.0, "deconv_gb": 27.5, "random": 5, "difference": 2.5, "images": 10.0},
        "fold1": {"ours": 20.0, "deconv_gb": 21.0, "random": 6, "difference": -1.0, "images": 10.0},
    }
    rows = list(csv.DictReader(write_box_occlusion(runs, tmp_path / "b.csv").open()))
    assert [r["run"] for r in rows] == ["fold0", "fold1", "mean"]
    mean = (rows[2]["ours"], rows[2]["deconv_gb"], rows[2]["random"], rows[2]["difference"])
    assert mean == ("25.00", "24.25", "5.50", "0.75")
    assert rows[0]["paper_difference"] == "2.0" and rows[0]["images"] == "10"


def test_the_study_takes_the_first_images_and_the_options_of_each_map():
    torch.manual_seed(0)
    net = mnist_lenet().eval()
    index = ResponseIndex.of(net)
    weights = torch.rand(index.size, 10, dtype=torch.float64)
    images = torch.randn(6, 1, 28, 28)
    batches = [{"image": images[:4]}, {"image": images[4:]}]
    fill = torch.tensor([-0.4])
    found = occlusion_study(net, index, weights, batches, 5, fill, 2, 7, "cpu", 0.25, 0.5)
    assert found["images"] == 5
    for name in ("ours", "deconv_gb", "random"):  # the same study, batch by batch, seeds 7, 8
        scores = []
        for n, chunk in enumerate((images[:4], images[4:5])):
            if name == "random":
                maps = torch.ones(len(chunk), 28, 28)
            else:
                maps = explain(net, index, weights, chunk, top_k=2, drawing=name).combined
            scores.append(box_occlusion(net, chunk, maps, fill, 0.25, 0.5, seed=7 + n).scores())
        assert found[name] == pytest.approx(100 * float(torch.cat(scores).mean()), abs=1e-4)
    assert found["difference"] == pytest.approx(found["ours"] - found["deconv_gb"])


@pytest.fixture(scope="module")
def classifier_root(tmp_path_factory):
    """The MNIST twin's classifier, 1 epoch of 8 batches, in a run root."""
    twin = write_synthetic_mnist(tmp_path_factory.mktemp("mnist_twin"))
    root = tmp_path_factory.mktemp("vebi_runs")
    main(
        [
            "run", "--config", "experiments/_base.yaml",
            "--config", "experiments/vebi/mnist_classifier.yaml",
            f"--data.init_args.root={twin}", f"--run.root={root}",
            "--trainer.accelerator=cpu", "--trainer.devices=1",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--data.init_args.num_workers=0", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=8", CSV_ONLY,
        ]
    )  # fmt: skip
    return root


@pytest.mark.slow  # about 15 s: a classifier fit and the analysis
def test_the_analysis_writes_box_occlusion_and_fig_3_5(classifier_root, tmp_path):
    options = AnalysisOptions(
        root=classifier_root, out=tmp_path, draws=1, top_k=2, occlusion_images=12,
        average_images=5, progress=False, device="cpu",
    )  # fmt: skip
    results = run_analysis(options)
    (run,) = results["runs"].values()
    scores = run["box_occlusion"]
    assert scores["images"] == 12
    assert scores["difference"] == pytest.approx(scores["ours"] - scores["deconv_gb"])
    assert all(-100 <= scores[name] <= 100 for name in ("ours", "deconv_gb", "random"))
    (row,) = csv.DictReader((tmp_path / "box_occlusion.csv").open())
    assert float(row["ours"]) == pytest.approx(scores["ours"], abs=0.006)
    assert "box_occlusion.csv" in (tmp_path / "analysis.md").read_text()
    assert json.loads((tmp_path / "analysis.json").read_text())["box_occlusion"]
    tiles = torch.load(tmp_path / "average_images.pt", weights_only=False)
    weights = torch.load(tmp_path / "relevant_filters.pt", weights_only=True)
    positive = weights["runs"]["vebi/mnist_classifier"]["weights_all"] > 1e-8
    assert len(tiles) == int(positive.sum())
    sides = {"conv1": 5, "conv2": 14, "fc3": 28}  # the LeNet's fields; fc3 sees the whole digit
    for tile in tiles:
        assert positive[tile["entry"], tile["cls"]]
        assert tile["image"].shape == (1, sides[tile["layer"]], sides[tile["layer"]])
        assert 1 <= tile["count"] <= 5
    assert (tmp_path / "fig_3_5.png").stat().st_size > 0
