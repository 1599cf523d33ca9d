"""Config errors: one short line first, naming the file and line (or the flag) and the close match.

Runs ``python -m experiments``'s ``main`` in-process on configs that the parser refuses, so nothing
is built or trained (the cases with flags use a small demo model, in case a flag were accepted).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from experiments.__main__ import main
from experiments.cli import LatentLabCLI
from experiments.config_errors import did_you_mean, locate
from experiments.pipeline_file import is_pipeline_file

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
BASE = EXPERIMENTS / "_base.yaml"
SHIPPED = sorted(
    p
    for p in EXPERIMENTS.glob("*/*.yaml")
    if p.parent.name not in ("sweeps", "cluster") and p != BASE and not is_pipeline_file(p)
)  # a pipeline YAML is no CLI config: its steps are (tests/test_pipeline.py)
DEMO = """\
model:
  class_path: lightning.pytorch.demos.boring_classes.DemoModel
  init_args:
    learning_rate: 0.1
data:
  class_path: lightning.pytorch.demos.boring_classes.BoringDataModule
"""


def _refused(capsys, tmp_path: Path, *args: str) -> str:
    """Run ``fit --config _base.yaml *args``: its error line (checked: short, first, code 2)."""
    quick = [f"--run.root={tmp_path / 'runs'}", "--trainer.fast_dev_run=true"]
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(BASE), *args, *quick])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert "usage:" not in err and len(lines) <= 2, err
    return lines[0]


@pytest.fixture
def demo(tmp_path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(DEMO)
    return path


@pytest.mark.parametrize(
    "right, wrong, match",
    [
        ("    lr: 3.0e-3", "    lrr: 3.0e-3", "did you mean `lr`?"),  # model.init_args
        ("        batch_size: 32", "        batch_sise: 32", "did you mean `batch_size`?"),  # deep
        ("  max_epochs: 15", "  max_epoch: 15", "did you mean `max_epochs`?"),  # trainer group
    ],
)
def test_yaml_key_typo_names_file_line_and_close_match(capsys, tmp_path, right, wrong, match):
    lines = (EXPERIMENTS / "face_attributes" / "synthetic.yaml").read_text().splitlines()
    assert lines.count(right) == 1
    line = lines.index(right) + 1
    path = tmp_path / "typo.yaml"
    path.write_text("\n".join(wrong if x == right else x for x in lines) + "\n")
    error = _refused(capsys, tmp_path, "--config", str(path))
    assert error.startswith(f"error: {path}:{line}: `"), error
    assert error.endswith(match), error


def test_invalid_yaml_names_file_and_line(capsys, tmp_path, demo):
    path = tmp_path / "broken.yaml"
    path.write_text("trainer:\n  max_epochs: 2\n  callbacks: [a: b\n")
    error = _refused(capsys, tmp_path, "--config", str(demo), "--config", str(path))
    assert error.startswith(f"error: {path}:4:1: invalid YAML: "), error
    assert "line 3" in error  # where the unclosed [ starts


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--trainer.max_epoch=1", "unknown option (options are not abbreviated); "
         "did you mean `--trainer.max_epochs`?"),  # a prefix: refused, not expanded
        ("--trainer.max_epochz=1", "unknown option; did you mean `--trainer.max_epochs`?"),
        ("--model.init_args.learning_rat=1", "DemoModel has no argument `learning_rat`; "
         "did you mean `learning_rate`?"),
        ("--trainer.max_epochs=abc", "must be int or None, not 'abc'"),
    ],
)  # fmt: skip
def test_flag_errors_name_the_flag(capsys, tmp_path, demo, flag, expected):
    error = _refused(capsys, tmp_path, "--config", str(demo), flag)
    assert error == f"error: {flag}: {expected}"


def test_value_from_a_file_names_its_line(capsys, tmp_path, demo):
    path = tmp_path / "value.yaml"
    path.write_text("# a comment\ntrainer:\n  max_epochs: many\n")
    error = _refused(capsys, tmp_path, "--config", str(demo), "--config", str(path))
    assert error == f"error: {path}:3: `trainer.max_epochs`: must be int or None, not 'many'"


def test_help_still_prints_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_locate_names_the_last_setting(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("model:\n  init_args:\n    lr: 1\n")
    second.write_text("trainer: {}\nmodel:\n  init_args: {lr: 2}\n")
    files = ["--config", str(first), f"--config={second}"]
    assert locate("model.lr", files) == (f"{second}:3", "model.init_args.lr")
    assert locate("model.lr", [*files, "--model.init_args.lr=3"])[0] == "--model.init_args.lr=3"
    assert locate("model.lr", [*files, "--model.lr", "3"])[0] == "--model.lr 3"
    assert locate("trainer.max_epochs", files) is None


def test_did_you_mean():
    assert did_you_mean("max_epoch", ["max_epochs", "min_epochs"]) == "; did you mean `max_epochs`?"
    assert did_you_mean("zzz", ["max_epochs"]) == ""


class _ParseOnly(LatentLabCLI):
    """The CLI's parser, without filling in run folders or building anything."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def test_every_shipped_experiment_parses():
    """The strict parser (no abbreviations, errors raised) takes every shipped experiment."""
    assert len(SHIPPED) > 10
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        parser = _ParseOnly(args=["--config", str(BASE), "--config", str(SHIPPED[0])], run=False)
    for path in SHIPPED:
        config = parser.parser.parse_args(["--config", str(BASE), "--config", str(path)])
        assert config.model.class_path, path
