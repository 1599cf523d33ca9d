"""The run folder's loggers: the appending CSV logger writes what Lightning's CSVLogger writes,
keeps an existing file, and logger configs are pointed at the run folder by class (subclasses
included)."""

from __future__ import annotations

from pathlib import Path

import torch
from jsonargparse import Namespace
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from experiments.loggers import ResumableCSVLogger, configure_loggers, trim_metrics

# a key that appears only later (a test metric) makes both loggers rewrite the header
CALLS = [
    ({"train/loss": torch.tensor(0.5), "epoch": 0}, 0),
    ({"train/loss": 0.25, "epoch": 0}, 1),
    ({"val/auroc": torch.tensor(0.75), "epoch": 0}, 1),
    ({"train/loss": 0.125, "epoch": 1}, 3),
    ({"test/auroc": 0.5, "epoch": 1}, 3),
]


def _log(logger, calls, save_every: int = 2) -> None:
    for i, (metrics, step) in enumerate(calls):
        logger.log_metrics(metrics, step)
        if i % save_every == save_every - 1:
            logger.save()
    logger.finalize("success")


def test_same_file_as_lightnings_csv_logger(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _log(ResumableCSVLogger(str(ours)), CALLS)
    _log(CSVLogger(theirs, name="", version=""), CALLS)
    assert (ours / "metrics.csv").read_text() == (theirs / "metrics.csv").read_text()
    logger = ResumableCSVLogger(str(ours))
    logger.log_hyperparams({"lr": 0.1})
    assert (ours / "hparams.yaml").read_text() == "lr: 0.1\n"


def test_appends_to_an_existing_file_after_trimming(tmp_path):
    """An interrupted run (epochs 0 and 1 logged, checkpoint of epoch 0) resumed by a new logger:
    the file ends as one uninterrupted run's."""
    straight = tmp_path / "straight"
    _log(ResumableCSVLogger(str(straight)), CALLS)
    resumed = tmp_path / "resumed"
    _log(ResumableCSVLogger(str(resumed)), CALLS[:4])
    assert trim_metrics(resumed / "metrics.csv", last_epoch=0) == 1
    _log(ResumableCSVLogger(str(resumed)), CALLS[3:], save_every=1)
    assert (resumed / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()


class MyWandb(WandbLogger):
    pass


class MyCSV(CSVLogger):
    pass


def _entry(cls: type, **init_args) -> Namespace:
    return Namespace(
        class_path=f"{cls.__module__}.{cls.__qualname__}", init_args=Namespace(init_args)
    )


def test_loggers_are_pointed_at_the_run_by_class(tmp_path):
    run = tmp_path / "m" / "d" / "2026-01-02_03-04-05"
    loggers = [
        _entry(ResumableCSVLogger, save_dir="runs"),
        _entry(MyCSV, save_dir="runs", name="x", version=None),
        _entry(TensorBoardLogger, save_dir="runs", name="x", version=None),
        _entry(MyWandb, save_dir="runs", project="p", offline=True),
    ]
    wandb_id = configure_loggers(loggers, run, "m/d", {"WANDB_MODE": "disabled"})
    assert [entry.init_args.save_dir for entry in loggers] == [str(run)] * 4
    assert (loggers[1].init_args.name, loggers[1].init_args.version) == ("", "")
    assert loggers[2].init_args.name == "tensorboard"
    assert loggers[3].init_args.id == wandb_id and loggers[3].init_args.name == f"m/d/{run.name}"
    assert not run.exists()  # choosing settings writes nothing
    assert configure_loggers(False, run, "m/d", {}) is None


def test_trim_keeps_rows_without_an_epoch(tmp_path):
    path = Path(tmp_path / "metrics.csv")
    path.write_text("epoch,loss,step\n0,1.0,0\n,2.0,1\n1,3.0,2\n")
    assert trim_metrics(path, last_epoch=0) == 1
    assert path.read_text().splitlines() == ["epoch,loss,step", "0,1.0,0", ",2.0,1"]
