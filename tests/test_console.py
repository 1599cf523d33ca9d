"""What a run prints: the config it would save (--print_config), and no lines a user cannot act
on (Lightning's logger advert, FLOPs: 0, a row per test metric, a deprecation in Lightning)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml
from cli_runs import NAME

from experiments.__main__ import main
from experiments.console import CompactModelSummary, summarize_test_metrics

# every test here runs the CLI, which seeds and may switch deterministic algorithms on
pytestmark = pytest.mark.usefixtures("restore_global_state")


def _run_folder(config: dict) -> str:
    return config["trainer"]["default_root_dir"]


def test_print_config_shows_what_the_run_saves(experiment_args, tmp_path, capsys):
    args = ["run", *experiment_args, "--trainer.max_epochs=1", "--trainer.callbacks=[]"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert not (tmp_path / "runs").exists()  # printing makes no run folder
    folder = _run_folder(printed)
    assert Path(folder).parent == tmp_path / "runs" / NAME  # filled in, as the run will be
    main(args)
    (run,) = (tmp_path / "runs" / NAME).iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    # the same config, up to the run folder's timestamp (taken when each command started) and
    # the fresh W&B run id each command draws
    text = yaml.safe_dump(printed).replace(Path(folder).name, run.name)
    wandb_printed, wandb_saved = printed["trainer"]["logger"][1], saved["trainer"]["logger"][1]
    text = text.replace(wandb_printed["init_args"]["id"], wandb_saved["init_args"]["id"])
    assert yaml.safe_load(text) == saved


def test_a_run_prints_what_a_user_can_act_on(experiment_args, capfd, caplog):
    args = ["run", *experiment_args, "--trainer.max_epochs=1"]  # with LogAUROC: 40 attributes
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO"):
        warnings.simplefilter("always")
        main([*args, "--trainer.enable_model_summary=true"])
    out = caplog.text + "".join(capfd.readouterr())
    assert "litlogger" not in out and "FLOPs" not in out
    assert "trainable, 0 frozen parameters" in out  # the summary is still there, short
    assert "Test: test/auroc_macro" in out  # headline test metrics in one line ...
    assert "test/auroc/Bald" not in out  # ... not a row for each of the 40 attributes
    assert not [w for w in caught if "LeafSpec" in str(w.message)]


def test_compact_summary_keeps_counted_flops(capfd, caplog):
    data = [(" ", ["0"]), ("Name", ["net"]), ("Type", ["Linear"]), ("FLOPs", ["1.0 K"])]
    with caplog.at_level("INFO"):
        CompactModelSummary.summarize(data, 10, 10, 0.0, {"train": 1}, 1000)
        CompactModelSummary.summarize(data, 10, 4, 0.0, {"train": 1}, 0)
    text = caplog.text + "".join(capfd.readouterr())
    assert text.count("FLOPs") == 2  # the column and the total, once: only where counted
    assert "10 trainable, 0 frozen" in text and "4 trainable, 6 frozen" in text


def test_summary_line_keeps_headline_metrics():
    metrics = {"test/loss": 0.5, "test/auroc/Bald": 0.7, "test/auroc_macro": 0.75, "val/loss": 1}
    line = summarize_test_metrics(metrics, "run/metrics.csv")
    assert line == "Test: test/auroc_macro 0.75, test/loss 0.5 (3 test metrics in run/metrics.csv)"
