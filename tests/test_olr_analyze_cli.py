"""OLR's analysis step end to end (slow): the four stage YAMLs run through the real CLI for one
short epoch each on the tiny synthetic twin, then ``python -m experiments.olr.analyze --root``
writes every figure, ``analysis.json`` and ``analysis.md``.

Kept apart from ``tests/methods`` for the reason ``tests/test_olr_stages_cli.py`` gives (an
in-process CLI run changes what later W&B tests see).
"""

from __future__ import annotations

import json
import math

import pytest
from test_olr_stages_cli import stage_args

from experiments.olr.analyze import main

pytestmark = pytest.mark.slow

FIGURES = (
    "fig2_occluded_pair.png",
    "fig3_probe_wrong_teacher_right.png",
    "fig4_norm_correlation.png",
    "fig5_pca_strip.png",
    "fig6_reconstructions.png",
    "fig7_editing.png",
    "fig8_emphasis.png",
    "editing_add_Eyeglasses.png",
    "editing_remove_Eyeglasses.png",
    "training_curves.png",
)
SECTIONS = {
    "classification": ("label_accuracy", "auroc_macro", "per_label_accuracy", "norm_auroc"),
    "norm_correlation": ("r_lipstick_makeup", "r_male_makeup", "abs_r_independent", "matrix"),
    "pca": ("pc1_ratio", "pc2_ratio", "pc1_auroc", "strip_ranks"),
    "reconstruction": ("ssim", "psnr", "mse", "mean_image"),
    "editing": ("add_raised_fraction", "remove_dropped_fraction", "other_labels_mean_abs_delta"),
    "occluded_pair": ("pair_loss", "image_ids"),
    "data": ("compression_ratio", "mean_active_labels"),
    "training": ("pair_loss_ratio",),
}


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_analysis_of_four_stage_runs(synthetic_faces_root, tmp_path, restore_global_state):
    from cli_runs import run_cli

    runs = tmp_path / "runs"
    stages = {
        "synthetic_teacher": [],
        "synthetic_siamese": ["--trainer.limit_predict_batches=1.0"],  # every image embedded
        "synthetic_probe": [],
        "synthetic_decoder": [],
    }
    for name, extra in stages.items():
        run_cli(
            ["fit", "--run.evaluate=true", *stage_args(name, synthetic_faces_root, runs), *extra]
        )

    assert main(["--root", str(runs), "--device", "cpu", "--no-progress"]) == 0

    out = runs / "analysis"
    for name in (*FIGURES, "analysis.json", "analysis.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "analysis.json").read_text())
    for section, keys in SECTIONS.items():
        missing = [key for key in keys if key not in results[section]]
        assert not missing, (section, missing)
    assert all(_finite(v) for v in results["classification"]["label_accuracy"].values())
    assert all(_finite(v) for v in results["reconstruction"]["mean_image"].values())
    bad = {k: v for k, v in results["assertions"].items() if not _finite(v)}
    assert not bad, bad
    assert len(results["norm_correlation"]["matrix"]) == 38
    assert {run["which"] for run in results["runs"].values()} == {"best"}
    notes = " ".join(results["notes"])  # best:<siamese> gives both stages the embedded weights
    assert "frozen encoder does not reproduce" not in notes
    assert "Linear probe P" in (out / "analysis.md").read_text()
