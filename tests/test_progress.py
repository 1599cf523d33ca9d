"""Progress in log files (``callbacks/progress.py``): plain lines when stdout is no terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from torch.utils.data import DataLoader, TensorDataset

from callbacks.progress import LineProgressBar, default_progress_bar
from experiments.cli import LatentLabCLI

REPO = Path(__file__).resolve().parents[1]


class _Regression(LightningModule):
    """A linear regression that logs its loss to the progress bar and a monitored val metric."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/mse", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(batches: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4 * batches, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def _fit(tmp_path, bar: LineProgressBar) -> None:
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        callbacks=[bar, ModelCheckpoint(dirpath=tmp_path, monitor="val/mse")],
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers")
        trainer.fit(_Regression(), _loader(5), _loader(3))


def test_lines_show_epoch_step_rate_eta_and_the_monitored_metric(tmp_path, capsys):
    _fit(tmp_path, LineProgressBar(interval=1e-9))  # a line after every batch
    lines = capsys.readouterr().out.splitlines()
    train = [line for line in lines if re.match(r"epoch \d/1 train ", line)]
    assert len(train) == 2 * 5
    rate_eta = r"[\d.]+ it/s ETA \d+:\d\d:\d\d"
    assert re.fullmatch(rf"epoch 0/1 train 1/5 {rate_eta} train/loss=\S+", train[0])
    second_epoch = re.compile(rf"epoch 1/1 train 3/5 {rate_eta} train/loss=\S+ val/mse=\S+")
    assert any(second_epoch.fullmatch(line) for line in train), train
    validation = re.compile(rf"epoch 1/1 val 2/3 {rate_eta} train/loss=\S+ val/mse=\S+")
    assert any(validation.fullmatch(line) for line in lines), lines
    done = [line for line in lines if " done in " in line]
    assert len(done) == 2
    assert re.fullmatch(
        r"epoch 0/1 done in \d+:\d\d:\d\d \(5 train batches, [\d.]+ it/s\) "
        r"train/loss=\S+ val/mse=\S+",
        done[0],
    ), done[0]


def test_lines_come_every_interval_and_at_each_epoch_end(tmp_path, capsys):
    _fit(tmp_path, LineProgressBar(interval=3600.0))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0].rsplit(" ", 1)[0] for line in lines] == [
        "epoch 0/1 done in",
        "epoch 1/1 done in",
    ]


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval must be > 0"):
        LineProgressBar(interval=0)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_without_a_terminal_rich_on_one():
    assert isinstance(default_progress_bar(io.StringIO()), LineProgressBar)
    assert isinstance(default_progress_bar(_Terminal()), RichProgressBar)


def test_the_cli_writes_lines_when_stdout_is_no_terminal(synthetic_faces_root, tmp_path):
    root, name = Path(synthetic_faces_root), "source.init_args"
    args = [
        f"--config={REPO / 'experiments' / '_base.yaml'}",
        f"--config={REPO / 'experiments' / 'face_attributes' / 'synthetic_tiny.yaml'}",
        f"--data.init_args.{name}.root={root / 'celeba'}",
        f"--data.init_args.target.init_args.root={root / 'ffhq'}",
        f"--run.root={tmp_path}",
        "--trainer.logger=false",
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = LatentLabCLI(args=args, run=False, environ={"WANDB_MODE": "disabled"})
    assert isinstance(cli.trainer.progress_bar_callback, LineProgressBar)  # pytest captures stdout


# ---------------------------------------------------------------- numba says when it compiles
def test_the_compile_notice_comes_once_before_numba_compiles(capsys):
    import numba

    from callbacks.wsol.level_sets.compile_notice import NOTICE, compile_notice

    double, triple = numba.njit(lambda x: 2 * x), numba.njit(lambda x: 3 * x)
    with compile_notice():
        assert double(2) + triple(2) == 10
    assert capsys.readouterr().err.count(NOTICE) == 1
    with compile_notice():
        assert double(3) == 6  # compiled already
    assert NOTICE not in capsys.readouterr().err


def test_analyse_says_when_it_compiles(monkeypatch, capsys):
    import numba
    import numpy as np

    from callbacks.wsol.level_sets import analyse, batch
    from callbacks.wsol.level_sets.compile_notice import NOTICE

    @numba.njit
    def image_range(*args):  # the real one compiles for about as long as a test suite runs
        pass

    monkeypatch.setattr(batch, "image_range", image_range)
    gt, num_gt = np.array([[[2, 2, 9, 9]]], dtype=np.int64), np.ones(1, dtype=np.int64)
    analyse(np.random.default_rng(0).random((1, 16, 16)), np.linspace(0, 1, 5), gt, num_gt)
    assert NOTICE in capsys.readouterr().err


def test_loading_from_numbas_cache_says_nothing(tmp_path):
    from callbacks.wsol.level_sets.compile_notice import NOTICE

    (tmp_path / "jitted.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef double(x):\n    return 2 * x\n"
    )
    code = (
        "from callbacks.wsol.level_sets.compile_notice import compile_notice\n"
        "import jitted\nwith compile_notice():\n    assert jitted.double(2) == 4\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr
    assert [NOTICE in run.stderr for run in runs] == [True, False]
