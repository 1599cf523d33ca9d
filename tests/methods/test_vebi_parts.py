"""VEBI's double-12c localization checks (spec vebi.md section 9 b): the mass of a heatmap per
candidate part, the part-mass win, the part switch, the same-hue class table, the pooling over
folds and the assertions, on hand-worked values; and (slow) the part-mass check on a trained and
an untrained classifier of the double-12c twin, through the analysis as the pipeline runs it."""

from __future__ import annotations

import csv
import itertools
import json

import pytest
import torch
from test_vebi_stages import FAST, _run  # the VEBI stage tests' in-process CLI, CSV logger only

from datamodules.synthetic.an8flower import class_table, make_an8flower
from experiments.vebi.analyze import AnalysisOptions, run_analysis
from experiments.vebi.assertions import check_part_mass, check_part_switch
from experiments.vebi.part_localization import pooled_parts, same_hue_classes
from lightning_modules.vebi.localization import part_mass_wins, part_masses, part_switch_moves


def test_part_masses_are_the_fractions_of_the_map_in_each_part():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    disc = torch.tensor([[1, 1], [0, 0]])
    leaves = torch.tensor([[0, 0], [0, 1]])
    parts = torch.stack([disc, leaves])[None].expand(2, -1, -1, -1)
    expected = torch.tensor([[3 / 10, 4 / 10], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(part_masses(maps, parts), expected)


def test_the_true_part_wins_only_with_strictly_more_mass():
    masses = torch.tensor([[0.3, 0.4], [0.3, 0.4], [0.5, 0.5], [0.0, 0.0]])
    wins = part_mass_wins(masses, torch.tensor([0, 1, 0, 1]))
    assert wins.tolist() == [False, True, False, False]  # a tie and an empty map win nothing
    three = torch.tensor([[0.2, 0.1, 0.3], [0.4, 0.1, 0.3]])
    assert part_mass_wins(three, torch.tensor([0, 0])).tolist() == [False, True]


def test_the_switch_moves_when_the_leaves_lead_rises():
    # [image, explained class's part (disc, leaves), part the mass is on (disc, leaves)]
    masses = torch.tensor(
        [
            [[0.6, 0.1], [0.4, 0.3]],  # leaves' lead -0.5 -> -0.1: rises, though still behind
            [[0.6, 0.1], [0.7, 0.05]],  # -0.5 -> -0.65: falls
            [[0.6, 0.1], [0.6, 0.1]],  # the same map for both classes: no move
            [[0.0, 0.0], [0.0, 0.5]],  # the disc class's map is empty
            [[0.1, 0.7], [0.2, 0.6]],  # 0.6 -> 0.4: falls although both maps favour the leaves
        ]
    )
    assert part_switch_moves(masses).tolist() == [True, False, False, False, False]


def test_the_switch_of_three_parts_needs_every_pair_to_move():
    torch.manual_seed(0)
    masses = torch.rand(200, 3, 3, dtype=torch.float64) / 3

    def reference(m) -> bool:  # the definition: a's lead over b rises from b's map to a's
        return all(
            m[a][a] - m[a][b] > m[b][a] - m[b][b] for a, b in itertools.permutations(range(3), 2)
        )

    expected = [reference(m.tolist()) for m in masses]
    assert any(expected) and not all(expected)
    assert part_switch_moves(masses).tolist() == expected


def test_same_hue_classes_pair_each_disc_class_with_the_leaves_class_of_its_colour():
    table = same_hue_classes(class_table("double_12c"), ("disc", "leaves"))
    assert table.tolist() == [[c % 6, c % 6 + 6] for c in range(12)]
    with pytest.raises(ValueError, match=r"no class for the \(part, colour\) pairs"):
        same_hue_classes(class_table("single_6c"), ("disc", "leaves"))


def test_parts_are_pooled_over_the_images_of_every_fold():
    folds = [
        dict(part_mass_wins=0.5, part_switch_moves=1.0, part_mass_true=0.4, part_mass_other=0.2,
             part_images=2.0, part_switch_empty=1.0),
        dict(part_mass_wins=1.0, part_switch_moves=0.5, part_mass_true=0.6, part_mass_other=0.0,
             part_images=6.0, part_switch_empty=0.0),
    ]  # fmt: skip
    together = pooled_parts(folds)
    assert together["part_mass_wins"] == pytest.approx(7 / 8)
    assert together["part_switch_moves"] == pytest.approx(5 / 8)
    assert together["part_mass_true"] == pytest.approx((0.8 + 3.6) / 8)
    assert together["part_mass_other"] == pytest.approx(0.4 / 8)
    assert (together["part_images"], together["part_switch_empty"]) == (8.0, 1.0)


def test_the_part_checks_ask_for_80_percent_of_the_images():
    parts = dict(part_mass_true=0.5, part_mass_other=0.1, part_images=10.0, part_switch_empty=0.0)
    assert check_part_mass(parts | {"part_mass_wins": 0.8})["passed"]
    assert not check_part_mass(parts | {"part_mass_wins": 0.79})["passed"]
    assert check_part_switch(parts | {"part_switch_moves": 0.8})["passed"]
    assert not check_part_switch(parts | {"part_switch_moves": 0.7})["passed"]


@pytest.mark.slow
@pytest.mark.usefixtures("restore_global_state")
def test_a_trained_classifier_puts_the_mass_on_the_true_part_and_an_untrained_one_does_not(
    tmp_path,
):
    """F trained 30 epochs (540 steps) on folds 1-4 of a 30-per-class double-12c twin, then the
    analysis of the pipeline on fold 0 (72 images): the part-mass check passes; for a freshly
    initialised F of the same architecture (the analysis's ``--untrained``) it fails. About 4
    minutes on one thread."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    make_an8flower(data, "double_12c", per_class=30, size=64, seed=0)
    _run(
        "--config", "experiments/vebi/an8flower_double_12c_classifier.yaml",
        f"--data.init_args.root={data}", "--data.init_args.synthetic=null", f"--run.root={runs}",
        "--trainer.check_val_every_n_epoch=30",
        "--run.name=vebi/an8flower_double_12c_fold0_classifier", *FAST,
    )  # fmt: skip
    common = dict(root=runs, prefix="vebi/an8flower_double_12c", draws=1, folds=1, progress=False)
    trained = run_analysis(AnalysisOptions(out=tmp_path / "trained", **common))
    untrained = run_analysis(AnalysisOptions(out=tmp_path / "untrained", untrained=True, **common))
    for name, results in (("trained", trained), ("untrained", untrained)):
        print(name, results["mca"]["original"], results["assertions"]["part_mass"])
        print(name, results["assertions"]["part_switch"])
    mass = trained["assertions"]["part_mass"]
    assert mass["passed"] and mass["images"] == 72
    assert mass["mass_true_part"] > 10 * mass["mass_other_part"]
    control = untrained["assertions"]["part_mass"]
    assert not control["passed"] and control["wins"] < mass["wins"] - 0.3
    # what the pipeline's analysis writes: the checks, and Tab. 3.1 with the double-12c column
    written = json.loads((tmp_path / "trained" / "analysis.json").read_text())
    assert {"part_mass", "part_switch"} <= set(written["assertions"])
    assert "- part_switch: " in (tmp_path / "trained" / "analysis.md").read_text()
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "trained" / "table_3_1.csv").open())}
    assert (rows["ours"]["paper_mean"], rows["gradcam"]["paper_mean"]) == ("23.2", "14.8")
