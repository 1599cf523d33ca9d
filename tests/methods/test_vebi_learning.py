"""VEBI works on the an8Flower twin (spec vebi.md section 9, slow): F trained as the single-6c
pipeline trains fold 0 (the CPU tier, 60 images per class at 64 px, 30 epochs), then the
pipeline's analysis. Its assertions must hold for the trained F and the ablation one must not
hold for the analysis's controls: a freshly initialised F of the same architecture
(``--untrained``) and W fitted on permuted labels (``--shuffle-labels``). The double-12c
part-mass check has its own slow test (tests/methods/test_vebi_parts.py); the pooled 5-fold
numbers and this test's run times are in docs/results/vebi.md.

Not reached, and kept visible as a strict xfail: with W fitted on shuffled labels the ablation
assertion still holds, with or without centring. The artefact assertion has no test here: it
holds on fold 0 of this twin but not pooled over the pipeline's five folds, and a one-fold test
would hide that. The numbers of both are in docs/results/vebi.md.
"""

from __future__ import annotations

import pytest
from test_vebi_stages import FAST, _run  # the VEBI stage tests' in-process CLI, CSV logger only

from datamodules.synthetic.an8flower import make_an8flower
from experiments.vebi.analyze import AnalysisOptions, run_analysis

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_global_state")]

PREFIX = "vebi/an8flower_single_6c"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run root with the fold-0 classifier of a fresh CPU-tier single-6c twin."""
    data, root = tmp_path_factory.mktemp("an8flower"), tmp_path_factory.mktemp("runs")
    make_an8flower(data, "single_6c", per_class=60, size=64, seed=0)
    _run(
        "--config", "experiments/vebi/an8flower_single_6c_classifier.yaml",
        f"--data.init_args.root={data}", "--data.init_args.synthetic=null", f"--run.root={root}",
        f"--run.name={PREFIX}_fold0_classifier", *FAST,
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def analyses(runs, tmp_path_factory) -> dict[str, dict]:
    """The analysis of the trained F and of its two controls."""
    common = dict(root=runs, prefix=PREFIX, folds=1, progress=False, device="cpu")
    controls = {
        "trained": {},
        "untrained": {"untrained": True},
        "shuffled": {"shuffle_labels": True},
    }
    return {
        name: run_analysis(AnalysisOptions(out=tmp_path_factory.mktemp(name), **common, **extra))
        for name, extra in controls.items()
    }


def test_relevant_filters_matter_more_than_random_ones_and_not_for_the_controls(analyses):
    """Feature importance (Fig. 3.4): F is accurate (>= 95% mCA), and ablating All's relevant
    filters costs at least 15 points more mCA than per-layer-matched random filters (10 draws);
    not so for an untrained F."""
    checks = {name: a["assertions"] for name, a in analyses.items()}
    assert checks["trained"]["precondition"]["passed"], checks["trained"]["precondition"]
    assert checks["trained"]["ablation"]["passed"], checks["trained"]["ablation"]
    assert checks["trained"]["ablation"]["draws"] == 10
    assert not checks["untrained"]["ablation"]["passed"], checks["untrained"]["ablation"]


@pytest.mark.xfail(
    strict=True,
    reason="not reached: W fitted on shuffled labels still selects filters whose ablation costs "
    "far more than random ones (docs/results/vebi.md)",
)
def test_relevant_filters_of_a_shuffled_label_fit_do_not_matter_more_than_random_ones(analyses):
    """The spec's second negative control of the ablation assertion."""
    check = analyses["shuffled"]["assertions"]["ablation"]
    assert not check["passed"], check


def test_heatmaps_find_the_disc_better_than_random_and_a_centred_prior(analyses):
    """Localization (Tab. 3.1): AUC-IoU of ours against the disc's mask above a random heatmap's
    by 10 points and above a centred Gaussian's."""
    check = analyses["trained"]["assertions"]["localization"]
    assert check["passed"], check
