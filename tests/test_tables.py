"""experiments/tables.py: headers, run-folder matching, tabulation, and a table run end to end."""

from __future__ import annotations

import csv
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml

from datamodules.synthetic.mnist import write_synthetic_mnist
from experiments.mil_lstm.table71 import TABLE as TABLE71
from experiments.run_dirs import RUN_DIR_ENV
from experiments.tables import (
    REPORT_MARKER,
    Table,
    complete_run,
    expected,
    main,
    markdown,
    parse_overrides,
    run_table,
    seed_args,
    summarize,
    write_report,
)
from lightning_modules.mil_lstm import LSTMPooling, MILModule

CELL = ("Ours", "single")
NAME = "mil_lstm/synthetic_single"


def tiny_table() -> Table:
    return Table(
        name="mil_lstm/tiny",
        title="Tiny",
        metric="test/error",
        rows=["Ours"],
        columns=["single"],
        cells={CELL: NAME},
        seed_keys=("seed_everything", "data.init_args.seed"),
    )


def test_expected_reads_the_yaml_header():
    assert expected("mil_lstm/mnist_single_sigma2_lstm") == ("test/error", "4.0 ± 0.4")
    assert expected("mil_lstm/mnist_outlier_attention") == ("test/error", "37.0")
    assert expected("mil_lstm/mnist_clustering_multiple_lstm") == ("test/cluster_score", "97.94")
    assert expected(NAME) is None


def test_table71_cells_expect_the_tabulated_metric():
    assert len(TABLE71.cells) == 25
    for name in TABLE71.cells.values():
        paper = expected(name)
        assert paper is not None and paper[0] == TABLE71.metric, name
    assert expected(TABLE71.cells[("Gated Atten. Based", "V: counting")])[1] == "11.9 ± 3.6"


def test_table_and_overrides_reject_bad_input():
    with pytest.raises(FileNotFoundError, match="mil_lstm/nope"):
        Table("m/t", "t", "test/error", ["r"], ["c"], {("r", "c"): "mil_lstm/nope"})
    with pytest.raises(ValueError, match="outside rows x columns"):
        Table("m/t", "t", "test/error", ["r"], ["c"], {("r", "x"): NAME})
    with pytest.raises(ValueError, match="--<dotted.key>=<value>"):
        parse_overrides(["trainer.max_epochs=1"])
    assert parse_overrides(["--a.b=1", "--c=x", "--d=[[9]]"]) == {"a.b": 1, "c": "x", "d": [[9]]}


def test_summarize_mean_and_population_std():
    mean, std, n = summarize([2.0, 4.0, 6.0])
    assert (mean, n) == (4.0, 3) and std == pytest.approx(np.std([2.0, 4.0, 6.0]))


def test_main_without_runs_tabulates_the_paper_numbers(tmp_path):
    path = main(["run", TABLE71.name, "--seeds", "1", "--root", str(tmp_path), "--no-run"])
    assert path == tmp_path / "mil_lstm" / "tables" / "table71.md"
    rows = {line.split("|")[1].strip(): line for line in path.read_text().splitlines()[8:13]}
    assert rows["Ours"].count("– / ") == 5 and "– / 2.07 |" in rows["Ours"]


def test_report_keeps_the_hand_written_part(tmp_path):
    tables = tmp_path / "runs" / "mil_lstm" / "tables"
    tables.mkdir(parents=True)
    (tables / "a.md").write_text("## A\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "mil_lstm.md").write_text(f"# Results\n\nnotes\n\n{REPORT_MARKER}\n\n## old\n")
    text = write_report("mil_lstm", tmp_path / "runs", docs).read_text()
    assert text == f"# Results\n\nnotes\n\n{REPORT_MARKER}\n\n## A\n"
    with pytest.raises(FileNotFoundError, match="run a table first"):
        write_report("other", tmp_path / "runs", docs)


def _test_error(run_dir: Path) -> float:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [float(r["test/error"]) for r in csv.DictReader(f) if r.get("test/error")][-1]


def test_table_runs_seeds_through_the_cli_and_resumes(tmp_path, monkeypatch):
    """Two seeds of one cell via `python -m experiments run`, each in its own run folder (also
    where the caller's environment names one, as in a cluster job); a second call runs nothing."""
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "runs" / NAME / "from_the_job"))
    twin = write_synthetic_mnist(tmp_path / "twin")
    overrides = [
        f"--data.init_args.root={twin}",
        "--data.init_args.num_train_bags=8",
        "--data.init_args.num_val_bags=4",
        "--data.init_args.num_test_bags=8",
        "--model.init_args.feature_dim=16",
        "--model.init_args.pooling.init_args.hidden_dim=4",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
    ]
    root, table = tmp_path / "runs", tiny_table()
    runs = run_table(table, [1, 2], root, overrides, jobs=2)
    folders = sorted((root / NAME).iterdir())
    assert len(folders) == 2 and sorted(runs[CELL]) == [1, 2]
    for seed, run_dir in runs[CELL].items():
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["seed_everything"] == seed and config["data"]["init_args"]["seed"] == seed
    errors = [_test_error(runs[CELL][s]) for s in (1, 2)]
    row = markdown(table, runs, [1, 2], "cmd").splitlines()[8]
    assert row == f"| Ours | {np.mean(errors):.1f} ± {np.std(errors):.1f} (2) / – |"

    assert run_table(table, [1, 2], root, overrides) == runs  # complete: nothing is rerun
    assert sorted((root / NAME).iterdir()) == folders
    other = parse_overrides(seed_args(table, 1) + [*overrides[:-1], "--trainer.max_epochs=2"])
    assert complete_run(root, NAME, other, "test/error") is None
    broken = root / NAME / "9999-12-31_23-59-59"  # newest, but its test never ran
    shutil.copytree(runs[CELL][1], broken)
    (broken / "metrics.csv").write_text("epoch,step,train/loss\n0,1,0.5\n")
    assert run_table(table, [1], root, overrides, execute=False)[CELL][1] == runs[CELL][1]

    checkpoint = next((runs[CELL][1] / "checkpoints").glob("epoch=*.ckpt"))
    pooling = partial(LSTMPooling, hidden_dim=4)
    loaded = MILModule.load_from_checkpoint(checkpoint, pooling=pooling, weights_only=True)
    assert loaded.hparams.feature_dim == 16 and loaded.pooling.lstm.hidden_size == 4
