"""ISTRC's analysis step end to end (slow): the seven stage runs of ``experiments/istrc/
synthetic.yaml`` through the real CLI for one short epoch each on the tiny synthetic twin, in one
pipeline folder, then ``python -m experiments.istrc.analyze --root`` writes every figure,
``evaluation.csv``, ``analysis.json`` and ``analysis.md``.

Kept apart from ``tests/methods`` for the reason ``tests/test_olr_stages_cli.py`` gives (an
in-process CLI run changes what later W&B tests see). Whether the numbers pass the spec's
assertions is the learning test's question (``tests/methods/test_istrc_learning.py``); here they
must exist, be finite and lie in their ranges.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from experiments.istrc.analyze import main

pytestmark = pytest.mark.slow

FIGURES = (
    "fig1_edit_strips.png",
    "fig2_circle.png",
    "fig2_interpolation.png",
    "fig2_noise_grid.png",
    "fig3_averages.png",
    "fig3_raw_mean_norm.png",
    "fig4_arithmetic.png",
    "fig5_confounds.png",
    "fig6_curves.png",
)
#: Assertion numbers that are fractions, SSIMs or AUROCs: in [0, 1] (SSIM may dip below 0).
UNIT_RANGE = ("verification_accuracy", "rank1_identity", "rank1_chance", "auroc_Male")
#: The encoder's batches on the tiny twin, whose train split has fewer than 32 identities.
TINY_BATCHES = ("--data.init_args.identities_per_batch=4", "--data.init_args.images_per_identity=2")


def _run(stage: str, data_root: Path, root: Path, *extra: str, subcommand: str = "fit") -> None:
    from cli_runs import FAST, REPO, run_cli

    config = "classifiers" if stage == "classifiers_shuffled" else stage
    twin = [
        f"--data.init_args.root={data_root / 'celeba'}",
        "--data.init_args.synthetic=null",
        "--data.init_args.num_workers=0",
    ]
    cache = [f"--data.init_args.path={root / 'istrc' / 'synthetic_cache'}"]
    args = [
        subcommand,
        *(["--run.evaluate=true"] if subcommand == "fit" else []),
        *("--config", str(REPO / "experiments" / "_base.yaml")),
        *("--config", str(REPO / "experiments" / "istrc" / f"synthetic_{config}.yaml")),
        *(cache if config in ("mapping", "classifiers") else twin),
        f"--run.root={root}",
        *[flag for flag in FAST if "max_epochs" not in flag and "limit_predict" not in flag],
        "--trainer.max_epochs=1",
        *extra,
    ]
    run_cli(args)


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_analysis_of_the_seven_stage_runs(synthetic_faces_root, tmp_path, restore_global_state):
    root = tmp_path / "pipeline"
    _run("encoder", synthetic_faces_root, root, *TINY_BATCHES)
    _run("began", synthetic_faces_root, root)
    _run("cache", synthetic_faces_root, root, subcommand="predict")  # every image: no limit
    _run("mapping", synthetic_faces_root, root)
    _run("classifiers", synthetic_faces_root, root)
    _run(
        "classifiers_shuffled",
        synthetic_faces_root,
        root,
        "--data.init_args.shuffle_labels=true",
        "--run.name=istrc/synthetic_classifiers_shuffled",
    )
    _run("judge", synthetic_faces_root, root)

    argv = ["--root", str(root), "--device", "cpu", "--no-progress", "--edit-count", "16"]
    assert main([*argv, "--steps", "100", "--every", "10"]) == 0

    out = root / "analysis"
    for name in (*FIGURES, "evaluation.csv", "analysis.json", "analysis.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "analysis.json").read_text())
    numbers = results["assertions"]
    undefined = {"auroc_hair_min"}  # the tiny twin's few test faces lack some hair colours
    bad = {k: v for k, v in numbers.items() if not _finite(v) and k not in undefined}
    assert not bad, bad
    assert all(0.0 <= numbers[key] <= 1.0 for key in UNIT_RANGE), numbers
    assert numbers["encoder_max_norm_error"] < 1e-5
    assert 0.0 <= numbers["k_min"] <= numbers["k_max"] <= 1.0
    for attribute in ("Male", "Big_Nose"):
        assert numbers[f"edit_{attribute}_max_step"] <= numbers["step_distance"] + 1e-6
        assert numbers[f"edit_{attribute}_max_norm_error"] < 1e-5
        for key in ("classifier_success", "judge_raised"):
            assert 0.0 <= numbers[f"edit_{attribute}_{key}"] <= 1.0
            assert 0.0 <= numbers[f"control_edit_{attribute}_{key}"] <= 1.0
    gap = results["classifiers"]["max_logged_gap"]
    assert gap < 1e-5, gap  # the recomputed AUROCs are the logged ones
    assert "FID (judge features)" in (out / "analysis.md").read_text()
    with (out / "evaluation.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == ["quantity", "value", "control", "note"]
    assert any(row["control"] for row in rows)
    empty = [row["quantity"] for row in rows if row["value"] in ("", "nan")]
    empty = [name for name in empty if not name.startswith("C_a test AUROC")]  # one class
    assert not empty, empty
