"""The pieces of OLR's analysis step (``experiments.olr.analyze``), on small hand-made inputs:
edit effects (assertion 7's numbers), the Fig. 2 pair figure, finding a stage run's best
checkpoint, the teacher's view of decoded images, the JSON conversion, the assertion numbers
and the flags. The whole step on real stage runs: ``tests/test_olr_analyze_cli.py`` (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from datamodules.synthetic.face_factors import NEGATIVE_CONTROLS, RENDERED_ATTRIBUTES
from experiments.analysis_output import jsonable
from experiments.batches import map_images, same_outputs
from experiments.metrics_csv import epoch_series, last_value
from experiments.olr.analyze import assertion_numbers, markdown, parse_args
from experiments.olr.curves import training_curves
from experiments.olr.sections import Editor
from experiments.run_dirs import best_checkpoint
from experiments.stage_runs import find_stage_run
from lightning_modules.olr.edit_effects import fraction_moved, other_labels_shift, row_share
from lightning_modules.olr.pair_figure import pair_figure

# --- edit effects ----------------------------------------------------------------------------


def test_fraction_moved_counts_strict_moves_in_the_direction():
    before = torch.tensor([[0.1, 0.5], [0.2, 0.5], [0.3, 0.5], [0.4, 0.5]])
    after = torch.tensor([[0.9, 0.0], [0.2, 0.0], [0.1, 0.0], [0.5, 0.0]])
    # label 0 changes by +0.8, 0, -0.2, +0.1
    assert fraction_moved(before, after, 0, +1) == pytest.approx(0.5)
    assert fraction_moved(before, after, 0, -1) == pytest.approx(0.25)
    assert fraction_moved(before, after, 1, -1) == 1.0


def test_other_labels_shift_is_the_mean_absolute_change_over_the_given_labels():
    before = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    after = torch.tensor([[0.9, 0.4, 0.7], [0.0, 0.6, 0.1]])
    assert other_labels_shift(before, after, [1, 2]) == pytest.approx((0.1 + 0.2 + 0.1 + 0.4) / 4)
    assert other_labels_shift(before, after, [0]) == pytest.approx(0.45)


def test_row_share_is_the_part_of_the_gap_the_row_carries():
    positives = torch.tensor([[0.9, 0.5], [0.7, 0.5]])  # label 0: mean 0.8
    negatives = torch.tensor([[0.1, 0.5], [0.3, 0.5]])  # 0.2
    given = torch.tensor([[0.4, 0.5], [0.6, 0.5]])  # 0.5: half of the 0.6 gap
    share = row_share(positives, negatives, given, 0)
    assert share["share"] == pytest.approx(0.5)
    assert (share["positives"], share["negatives"]) == pytest.approx((0.8, 0.2))
    assert share["negatives_given_row"] == pytest.approx(0.5)
    assert row_share(positives, negatives, negatives, 0)["share"] == 0.0  # the row is ignored
    assert row_share(positives, negatives, positives, 0)["share"] == pytest.approx(1.0)
    assert math.isnan(row_share(positives, negatives, given, 1)["share"])  # no gap in label 1


@pytest.mark.parametrize(
    "call",
    [
        lambda: row_share(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3), 0),
        lambda: fraction_moved(torch.zeros(2, 3), torch.zeros(3, 3), 0, 1),
        lambda: fraction_moved(torch.zeros(2, 3), torch.zeros(2, 3), 0, 0),
        lambda: other_labels_shift(torch.zeros(2, 3), torch.zeros(2, 3), []),
        lambda: other_labels_shift(torch.zeros(0, 3), torch.zeros(0, 3), [1]),
    ],
)
def test_edit_effects_refuse_bad_input(call):
    with pytest.raises(ValueError):
        call()


# --- Fig. 2 ------------------------------------------------------------------------------------


def test_pair_figure_draws_two_images_and_grouped_bars():
    names = ["A", "B", "C"]
    series = {"p_a": [0.1, 0.9, 0.5], "p_b": torch.tensor([0.2, 0.8, 0.5]), "t": [0, 1, 0.25]}
    image = pair_figure(torch.rand(3, 16, 16), torch.rand(3, 16, 16), series, names, title="x")
    assert isinstance(image, Image.Image) and image.width > 200 and image.height > 200


def test_pair_figure_needs_one_value_per_label():
    with pytest.raises(ValueError, match="one value per label"):
        pair_figure(torch.rand(3, 8, 8), torch.rand(3, 8, 8), {"u": [0.1]}, ["A", "B"])


# --- stage runs --------------------------------------------------------------------------------


def _run(root: Path, name: str, stamp: str, callbacks: dict) -> Path:
    run_dir = root / name / stamp
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "callbacks": callbacks}, run_dir / "checkpoints" / "last.ckpt")
    return run_dir


def _checkpoint_state(best: str, monitor: str | None = "val/loss") -> dict:
    key = f"RunCheckpoint{{'monitor': {monitor!r}}}"
    return {key: {"monitor": monitor, "best_model_path": best, "dirpath": "."}}


def test_best_checkpoint_is_the_monitored_one_recorded_in_last_ckpt(tmp_path):
    run_dir = _run(tmp_path, "olr/x", "2026-01-01_00-00-00", _checkpoint_state("epoch=3.ckpt"))
    (run_dir / "checkpoints" / "epoch=3.ckpt").write_bytes(b"")
    assert best_checkpoint(run_dir) == (run_dir / "checkpoints" / "epoch=3.ckpt", "best")


@pytest.mark.parametrize(
    "callbacks",
    [
        {},
        _checkpoint_state("epoch=3.ckpt"),  # recorded, but the file is gone
        _checkpoint_state("last.ckpt", monitor=None),  # the unmonitored last.ckpt writer
    ],
)
def test_best_checkpoint_falls_back_to_last(tmp_path, callbacks):
    run_dir = _run(tmp_path, "olr/x", "2026-01-01_00-00-00", callbacks)
    assert best_checkpoint(run_dir) == (run_dir / "checkpoints" / "last.ckpt", "last")


def test_find_stage_run_takes_the_newest_and_names_the_flag_when_missing(tmp_path):
    _run(tmp_path, "olr/x", "2026-01-01_00-00-00", {})
    newer = _run(tmp_path, "olr/x", "2026-01-02_00-00-00", {})
    run = find_stage_run(tmp_path, "olr/x", "--probe")
    assert run.run_dir == newer and run.which == "last"
    with pytest.raises(FileNotFoundError, match="--decoder olr/y.*make experiment NAME=olr/y"):
        find_stage_run(tmp_path, "olr/y", "--decoder")


# --- batches and the teacher's view of decoded images -------------------------------------------


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i]}


def test_map_images_concatenates_in_loader_order_and_same_outputs_compares_first_batch():
    images = torch.rand(10, 3, 4, 4)
    loader = DataLoader(_Images(images), batch_size=4)
    out = map_images(lambda x: x.mean((2, 3)), loader, torch.device("cpu"), "t", progress=False)
    torch.testing.assert_close(out, images.mean((2, 3)))
    encoder = nn.Flatten()
    assert same_outputs(encoder, loader, images.flatten(1), torch.device("cpu"))
    assert not same_outputs(encoder, loader, images.flatten(1) + 0.1, torch.device("cpu"))


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return x[:, 0, :2, 0]


def test_editor_pads_decoded_images_back_to_the_teacher_size_repeating_the_border():
    teacher = _Recorder()
    editor = Editor(decoder=None, teacher=teacher, stats=None, device=torch.device("cpu"))
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    editor.score(images)
    (padded,) = teacher.seen
    assert padded.shape == (2, 3, 6, 6)
    torch.testing.assert_close(padded[..., 1:-1, 1:-1], images)  # every pixel where it was
    torch.testing.assert_close(padded[..., 0, 1:-1], images[..., 0, :])  # replicated border
    torch.testing.assert_close(padded[..., 1:-1, -1], images[..., :, -1])


# --- results ----------------------------------------------------------------------------------


def test_jsonable_turns_tensors_into_lists_and_nan_into_null():
    value = {"a": torch.tensor([1.0, math.nan]), "b": (math.inf, 2), 3: {"c": math.nan}}
    out = jsonable(value)
    assert out == {"a": [1.0, None], "b": [None, 2], "3": {"c": None}}
    json.dumps(out, allow_nan=False)


def _results() -> dict:
    rendered, controls = list(RENDERED_ATTRIBUTES[:2]), list(NEGATIVE_CONTROLS[:2])
    names = rendered + controls

    def per(values):
        return dict(zip(names, values, strict=True))

    return {
        "classification": {
            "norm_auroc": per([0.95, 0.92, 0.45, None]),
            "per_label_accuracy": {
                "probe": per([0.9, 0.8, 0.7, 0.6]),
                "majority": per([0.6, 0.7, 0.7, 0.5]),
                "teacher": per([0.95, 0.85, 0.7, 0.6]),
            },
            "label_accuracy": {"probe": 0.75, "teacher": 0.8, "majority": 0.6},
            "auroc_macro": {"probe": 0.8, "teacher": None},
        },
        "norm_correlation": {
            "r_lipstick_makeup": 0.5,
            "r_male_makeup": -0.4,
            "abs_r_independent": 0.05,
            "independent_pair": ["Eyeglasses", "Wearing_Hat"],
        },
        "pca": {
            "label": "Mouth_Slightly_Open",
            "pc1_auroc": 0.97,
            "pc1_ratio": 0.6,
            "pc2_ratio": 0.1,
        },
        "reconstruction": {
            "ssim": 0.6,
            "psnr": 20.0,
            "mse": 0.01,
            "mean_image": {"ssim": 0.4, "psnr": 15.0, "mse": 0.03},
        },
        "editing": {
            "label": "Eyeglasses",
            "add_raised_fraction": 0.8,
            "add_emphasised_raised_fraction": 0.9,
            "remove_dropped_fraction": 0.75,
            "other_labels_mean_abs_delta": 0.05,
            "row_share": {"share": 0.625},
        },
        "occluded_pair": {"index": 0, "pair_loss": 0.01},
        "training": {"pair_loss_ratio": 0.4},
        "runs": {"probe": {"checkpoint": "p.ckpt", "which": "best"}},
        "notes": ["a note"],
    }


def test_assertion_numbers_group_rendered_and_unrendered_labels():
    numbers = assertion_numbers(_results())
    assert numbers["norm_auroc_rendered_min"] == pytest.approx(0.92)
    assert numbers["norm_auroc_unrendered_min"] == numbers["norm_auroc_unrendered_max"] == 0.45
    assert numbers["probe_rendered"] == pytest.approx(0.85)
    assert numbers["majority_rendered"] == pytest.approx(0.65)
    assert numbers["teacher_rendered"] == pytest.approx(0.9)
    assert numbers["probe_unrendered"] == pytest.approx(0.65)
    assert numbers["majority_unrendered"] == pytest.approx(0.6)
    assert numbers["r_male_makeup"] == -0.4 and numbers["pca_pc1_auroc"] == 0.97
    assert numbers["ssim_mean_image"] == 0.4 and numbers["mse"] == 0.01
    assert numbers["remove_dropped_fraction"] == 0.75 and numbers["pair_loss_ratio"] == 0.4


def test_markdown_reports_the_table_and_notes():
    text = markdown(_results())
    assert "| Linear probe P | 0.7500 | 0.8000 |" in text
    assert "| Teacher C | 0.8000 | n/a |" in text
    assert "p.ckpt (best)" in text and "Note: a note" in text
    assert "carried by its own row | 0.625 |" in text


def test_flags_default_to_the_synthetic_stage_names_and_override():
    options = parse_args(["--root", "r"])
    assert (options.teacher, options.decoder) == ("olr/synthetic_teacher", "olr/synthetic_decoder")
    assert options.independent == ("Smiling", "Black_Hair")
    assert options.pca_label == "Mouth_Slightly_Open" and options.edit_label == "Eyeglasses"
    options = parse_args(
        ["--root", "r", "--siamese", "olr/celeba_siamese", "--independent", "Bald", "Smiling"]
    )
    assert options.siamese == "olr/celeba_siamese" and options.independent == ("Bald", "Smiling")


# --- training curves ----------------------------------------------------------------------------


def test_epoch_series_reads_the_rows_that_hold_a_key(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,train/loss_step,val/loss,test/loss_ratio\n"
        "0,0,1.5,,\n0,9,,0.8,\n1,19,,0.6,\n1,19,,,0.45\n"
    )
    assert epoch_series(path, "val/loss") == ([0, 1], [0.8, 0.6])
    assert last_value(path, "test/loss_ratio") == 0.45
    assert math.isnan(last_value(path, "val/loss_ratio"))
    with pytest.raises(FileNotFoundError, match="metrics.csv is missing"):
        epoch_series(tmp_path / "gone" / "metrics.csv", "val/loss")


def test_training_curves_draw_one_panel_per_stage_also_when_nothing_was_logged():
    panels = {"L_S": {"train": ([0, 1], [1.0, 0.5])}, "probe": {"val": ([], [])}}
    assert isinstance(training_curves(panels), Image.Image)


@pytest.mark.parametrize(
    ("weights_file", "expected"), [("resnet18", {"random_init": True}), (None, {})]
)
def test_a_module_that_started_from_a_pretrained_file_is_loaded_without_reading_it(
    tmp_path, monkeypatch, weights_file, expected
):
    from experiments.olr.analyze import _load
    from experiments.stage_runs import StageRun

    config = {
        "model": {
            "class_path": "x.Y",
            "init_args": {"weights_file": weights_file, "random_init": False},
        }
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    calls = []
    monkeypatch.setattr(StageRun, "load_module", lambda self, **kwargs: calls.append(kwargs))
    _load(StageRun("olr/t", tmp_path, tmp_path / "last.ckpt", "last"))
    assert calls == [expected]


def test_saved_embeddings_must_cover_the_split_in_file_order():
    from types import SimpleNamespace

    from experiments.olr.analyze import _check_ids

    loader = SimpleNamespace(dataset=SimpleNamespace(names=["1.jpg", "2.jpg", "3.jpg"]))
    _check_ids({"image_id": ["1.jpg", "2.jpg", "3.jpg"]}, loader, "test")
    with pytest.raises(ValueError, match="holds 1 rows but the data's test split 3 images"):
        _check_ids({"image_id": ["1.jpg"]}, loader, "test")
    with pytest.raises(ValueError, match="not the data's test images in file order"):
        _check_ids({"image_id": ["2.jpg", "1.jpg", "3.jpg"]}, loader, "test")


def test_an_unknown_label_names_its_flag():
    from experiments.olr.sections import Inputs

    inputs = Inputs(["A", "B"], *[None] * 6, out_dir=Path("."), device=torch.device("cpu"))
    assert inputs.index("B", "--pca-label") == 1
    with pytest.raises(ValueError, match="--pca-label: unknown label 'C'"):
        inputs.index("C", "--pca-label")
