"""The runner: run folders, resume determinism, W&B offline files, safe checkpoints, NaN stop.

Runs the real CLI in-process on the face-attribute experiment (synthetic tiny twin), cut to a few
batches per epoch so the whole file stays fast on CPU.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from cli_runs import NAME, REPO, KillAt, run_cli
from omegaconf import OmegaConf

from experiments.__main__ import main
from experiments.cli import LatentLabCLI
from experiments.run_dirs import (
    RUN_DIR_ENV,
    choose_run_dir,
    latest_run_dir,
    new_run_dir,
    run_name_from_configs,
)
from experiments.wandb_setup import WANDB_ID_FILE, wandb_has_credentials

# every test here runs the CLI, which seeds and may switch deterministic algorithms on
pytestmark = pytest.mark.usefixtures("restore_global_state")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_run_folder_layout_and_safe_checkpoints(experiment_args, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # real W&B files, no network
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    main(["run", *experiment_args, "--trainer.max_epochs=1"])  # fit + test + predict
    import wandb

    wandb.finish()
    (run,) = (tmp_path / "runs" / NAME).iterdir()
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    config = OmegaConf.load(run / "config.yaml")
    assert config.run.name == NAME and config.trainer.max_epochs == 1
    assert config.checkpoint.dirpath == str(run / "checkpoints")
    keys = set(_rows(run / "metrics.csv")[0])
    assert any(k.startswith("train/") for k in keys) and any(k.startswith("test/") for k in keys)
    # W&B keeps its own files (its config.yaml included) under <run>/wandb, apart from ours
    wandb_files = [p for p in (run / "wandb").rglob("*") if p.is_file()]
    assert wandb_files and all(run / "wandb" in p.parents for p in wandb_files)
    assert OmegaConf.load(run / "config.yaml").model.class_path.startswith("lightning_modules.")
    run_id = (run / WANDB_ID_FILE).read_text().strip()
    assert any(run_id in p.name for p in (run / "wandb").iterdir())
    for path in (run / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert checkpoint["state_dict"] and checkpoint["epoch"] == 0
    # a one-epoch fit: its files name epoch 0, as its logs and checkpoints do
    assert {p.name for p in run.glob("auroc_*.csv")} == {
        "auroc_val_epoch0.csv",
        "auroc_test_epoch0.csv",
    }


def test_a_run_folder_taken_meanwhile_is_refused(experiment_args, monkeypatch):
    """Two runs of one name started in the same second choose the same new timestamp: the one
    that comes second to create it stops with a SetupError and leaves the other's files alone."""
    import experiments.cli as cli_module
    from experiments.errors import SetupError

    taken: list[Path] = []

    def choose_then_lose_the_race(root, name, resume, environ):
        chosen = choose_run_dir(root, name, resume, environ)
        chosen.mkdir(parents=True)
        (chosen / "metrics.csv").write_text("the other run's\n")
        taken.append(chosen)
        return chosen

    monkeypatch.setattr(cli_module, "choose_run_dir", choose_then_lose_the_race)
    with pytest.raises(SetupError, match="created by another process after this run chose it"):
        run_cli(["fit", *experiment_args])
    assert (taken[0] / "metrics.csv").read_text() == "the other run's\n"
    assert sorted(p.name for p in taken[0].iterdir()) == ["metrics.csv"]


def test_resume_matches_uninterrupted_run(experiment_args, tmp_path):
    """Fit 2 epochs straight vs. a fit killed in epoch 1 and resumed: same metrics, same weights.

    Both use the same config (same LR schedule); the kill comes in the first batch of epoch 1,
    after the epoch-0 checkpoint. The resumed run drops the rows logged after that checkpoint.
    The experiment's evaluation callbacks (charts) are dropped to save time.
    """
    experiment_args = [*experiment_args, "--trainer.callbacks=[]"]
    run_cli(["fit", *experiment_args, "--run.name=straight"])
    killed = run_cli([*experiment_args, "--run.name=resumed"], run=False)
    killed.trainer.callbacks.append(KillAt(epoch=1))
    with pytest.raises(RuntimeError, match="simulated kill"):
        killed.trainer.fit(killed.model, datamodule=killed.datamodule)
    last = torch.load(killed.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 2)
    cli = run_cli(["fit", *experiment_args, "--run.name=resumed", "--run.resume=true"])
    assert cli.run_dir == killed.run_dir and cli.trainer.global_step == 4

    run_a = latest_run_dir(tmp_path / "runs", "straight")
    rows_a, rows_b = _rows(run_a / "metrics.csv"), _rows(cli.run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows_b if r.get("train/loss_step")] == ["0", "0", "1", "1"]
    assert rows_a == rows_b
    last_a = torch.load(run_a / "checkpoints" / "last.ckpt", weights_only=True)
    last_b = torch.load(cli.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last_a["global_step"] == last_b["global_step"] == 4  # last.ckpt is the newest state
    last_a, last_b = last_a["state_dict"], last_b["state_dict"]
    assert last_a.keys() == last_b.keys()
    for key in last_a:
        torch.testing.assert_close(last_a[key], last_b[key], rtol=0, atol=0, msg=key)


def test_resume_without_a_checkpoint_says_what_to_do(experiment_args):
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        run_cli(["fit", *experiment_args, "--run.resume=true"])


def test_init_from_loads_weights_but_starts_afresh(experiment_args, tmp_path):
    """--run.init_from: the weights of another run's checkpoint, epoch and optimizer from zero."""
    args = [*experiment_args, "--trainer.callbacks=[]"]
    first = run_cli(["fit", *args, "--run.name=first", "--trainer.max_epochs=1"])
    ckpt = first.run_dir / "checkpoints" / "last.ckpt"
    tuned = run_cli(
        ["fit", *args, "--run.name=tuned", f"--run.init_from={ckpt}",
         "--trainer.limit_train_batches=0", "--trainer.limit_val_batches=0"]
    )  # fmt: skip
    assert tuned.trainer.global_step == 0 and tuned.run_dir != first.run_dir
    expected = torch.load(ckpt, weights_only=True)["state_dict"]
    for key, value in tuned.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    with pytest.raises(FileNotFoundError, match="init_from: no checkpoint file"):
        run_cli(["fit", *args, f"--run.init_from={tmp_path / 'missing.ckpt'}"])


def test_init_from_latest_run_of_a_name(experiment_args, tmp_path):
    """--run.init_from=latest:<name>: the last.ckpt of that name's newest run (pipeline YAMLs)."""
    args = [*experiment_args, "--trainer.callbacks=[]", "--trainer.limit_val_batches=0"]
    run_cli(["fit", *args, "--run.name=pre", "--trainer.max_epochs=1"])
    newer = run_cli(["fit", *args, "--run.name=pre", "--trainer.max_epochs=2"])
    tuned = run_cli(
        ["fit", *args, "--run.name=tuned", "--run.init_from=latest:pre",
         "--trainer.limit_train_batches=0"]
    )  # fmt: skip
    last = newer.run_dir / "checkpoints" / "last.ckpt"
    expected = torch.load(last, weights_only=True)
    assert expected["epoch"] == 1  # the second run's, not the first's
    for key, value in tuned.model.state_dict().items():
        torch.testing.assert_close(value, expected["state_dict"][key], rtol=0, atol=0, msg=key)
    saved = OmegaConf.load(tuned.run_dir / "config.yaml")
    assert saved.run.init_from == str(last)  # the run records which file it started from
    with pytest.raises(FileNotFoundError, match="make experiment NAME=absent"):
        run_cli(["fit", *args, "--run.name=orphan", "--run.init_from=latest:absent"])
    assert not (tmp_path / "runs" / "orphan").exists()  # refused at setup, before a run folder


def test_bf16_mixed_run_end_to_end(experiment_args, tmp_path):
    """The mixed-precision path the GPU tier uses, on CPU autocast: fit, test and FFHQ labels."""
    args = [*experiment_args, "--trainer.precision=bf16-mixed", "--trainer.max_epochs=1"]
    cli = run_cli(["fit", *args, "--run.name=bf16", "--run.evaluate=true"])
    assert cli.trainer.precision == "bf16-mixed"
    (row,) = [r for r in _rows(cli.run_dir / "metrics.csv") if r.get("test/auroc_macro")]
    assert 0 <= float(row["test/auroc_macro"]) <= 1 and math.isfinite(float(row["test/loss"]))
    labels = torch.load(cli.run_dir / "ffhq_labels.pt", weights_only=True)
    assert labels["soft"].dtype == torch.float32 and torch.isfinite(labels["soft"]).all()


def test_smoke_run_writes_nothing(experiment_args, tmp_path, monkeypatch):
    smoke = tmp_path / "smoke"
    args = ["--trainer.fast_dev_run=true", "--trainer.logger=false"]
    cli = run_cli(["fit", *experiment_args, *args, f"--trainer.default_root_dir={smoke}"])
    assert cli.run_dir is None and not (tmp_path / "runs").exists()
    assert cli.trainer.default_root_dir == str(smoke)
    cli = run_cli([*experiment_args, *args], run=False)
    temporary = Path(cli.trainer.default_root_dir)
    assert temporary.name.startswith("latentlab-smoke-")  # not the cwd
    temporary.rmdir()
    # a smoke run removes its temporary folder (with what callbacks wrote there) at the end
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    run_cli(["fit", *experiment_args, *args, "--run.evaluate=true"])  # predict writes labels
    assert not list((tmp_path / "tmp").iterdir())


def test_a_run_that_fails_before_its_first_epoch_leaves_nothing(
    experiment_args, synthetic_faces_root, tmp_path, monkeypatch, capsys
):
    """A data error at setup: no run folder (W&B files and id included) is left behind."""
    monkeypatch.setenv("WANDB_MODE", "offline")  # a real (offline) W&B run is started
    broken = tmp_path / "celeba"
    shutil.copytree(Path(synthetic_faces_root) / "celeba", broken)
    table = broken / "list_attr_celeba.txt"
    table.write_text(table.read_text()[:-40])  # the last row cut short
    flag = f"--data.init_args.source.init_args.root={broken}"
    with pytest.raises(SystemExit) as exit_info:  # the data error, reported in one message
        main(["run", *experiment_args, flag])
    assert exit_info.value.code == 2 and "list_attr_celeba.txt" in capsys.readouterr().err
    assert not list((tmp_path / "runs").rglob("*"))  # run folder, its parents, W&B files: gone
    # a run that saved an epoch before failing is kept: it can be resumed
    with pytest.raises(RuntimeError, match="simulated kill"):
        kill = "--trainer.callbacks=[{class_path: cli_runs.KillAt, init_args: {epoch: 1}}]"
        main(["fit", *experiment_args, kill])
    (kept,) = (tmp_path / "runs" / NAME).iterdir()
    assert (kept / "checkpoints" / "last.ckpt").is_file() and (kept / "config.yaml").is_file()


def test_nested_datamodules_record_their_own_hparams(experiment_args):
    """The label-transfer datamodule nests CelebA and FFHQ ones: Lightning's CLI hparams (the whole
    data config, to rebuild it from a checkpoint) go to the outer one only."""
    cli = run_cli([*experiment_args, "--trainer.fast_dev_run=true"], run=False)
    outer, source = cli.datamodule.hparams, cli.datamodule.source.hparams
    assert outer["_class_path"] == "datamodules.label_transfer.LabelTransferDataModule"
    assert "_class_path" not in source and "source" not in source
    assert source["batch_size"] == 8 and source["root"].endswith("celeba")
    assert cli.model.hparams["_class_path"].startswith("lightning_modules.")


def test_trainer_callbacks_and_their_order(experiment_args):
    """The experiment's callbacks, then RNG states, the monitored checkpoint before last.ckpt's
    (the first one is the Trainer's `checkpoint_callback`, the best for `run`), NaN guard, and
    the config saver; no ModelCheckpoint when checkpointing is off."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import SaveConfigCallback

    from callbacks.auroc import LogAUROC
    from callbacks.nan_guard import NaNGuard
    from callbacks.rng_state import RNGStateCheckpoint

    cli = run_cli(experiment_args, run=False)
    assert cli.environ[RUN_DIR_ENV] == str(cli.run_dir)  # for DDP children, once it exists
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert kinds[0] is LogAUROC and RNGStateCheckpoint in kinds
    assert NaNGuard in kinds and SaveConfigCallback in kinds
    first, last = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert cli.trainer.checkpoint_callback is first and first.monitor == "val/hamming"
    assert (last.monitor, last.filename, Path(last.dirpath)) == (
        None, "last", cli.run_dir / "checkpoints"
    )  # fmt: skip
    off = run_cli([*experiment_args, "--trainer.enable_checkpointing=false"], run=False)
    assert not any(isinstance(c, ModelCheckpoint) for c in off.trainer.callbacks)


def test_wandb_goes_offline_without_credentials(experiment_args, tmp_path, caplog):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login x password y\n")
    with caplog.at_level("INFO"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = LatentLabCLI(args=experiment_args, run=False, environ={"NETRC": str(netrc)})
    wandb_cfg = next(x for x in cli.config.trainer.logger if x.class_path.endswith("WandbLogger"))
    assert wandb_cfg.init_args.offline is True
    assert wandb_cfg.init_args.save_dir == str(cli.run_dir)
    assert f"wandb sync {cli.run_dir / 'wandb'}" in caplog.text


def test_wandb_credentials(tmp_path):
    netrc = tmp_path / "netrc"
    assert not wandb_has_credentials({}, netrc)  # no file
    assert wandb_has_credentials({"WANDB_API_KEY": "k"}, netrc)
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    os.chmod(netrc, 0o600)
    assert wandb_has_credentials({}, netrc)
    assert not wandb_has_credentials({"WANDB_BASE_URL": "https://wandb.example.org"}, netrc)


def test_run_names_and_folders(tmp_path):
    experiments = REPO / "experiments"
    name = run_name_from_configs([experiments / "_base.yaml", experiments / "a" / "b_c.yaml"])
    assert name == "a/b_c"
    assert run_name_from_configs(["elsewhere/experiments/m/d.yaml"]) == "m/d"
    assert run_name_from_configs([experiments / "m" / "d.yaml", "my_overrides.yaml"]) == "m/d"
    assert run_name_from_configs(["/tmp/mine.yaml"]) == "mine"
    with pytest.raises(ValueError, match="run.name"):
        run_name_from_configs([experiments / "_base.yaml"])
    from datetime import datetime

    now = datetime(2026, 1, 2, 3, 4, 5)
    first, second = new_run_dir(tmp_path, "m/d", now), new_run_dir(tmp_path, "m/d", now)
    assert first.name == "2026-01-02_03-04-05" and second.name == "2026-01-02_03-04-05_2"
    for run in (first, second):
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").touch()
    assert latest_run_dir(tmp_path, "m/d") == second
    # choosing touches nothing; a DDP child (or a cluster script) names its folder in RUN_DIR_ENV
    chosen = choose_run_dir(tmp_path, "m/d", resume=False, environ={})
    assert chosen.parent == tmp_path / "m/d" and not chosen.exists()
    parent = tmp_path / "m/d" / "from_parent"
    child = {RUN_DIR_ENV: str(parent)}
    assert choose_run_dir(tmp_path, "m/d", resume=False, environ=child) == parent
    assert choose_run_dir(tmp_path, "m/other", resume=False, environ=child).name != "from_parent"
    assert choose_run_dir(tmp_path, "m/d", resume=True, environ=child) == second


def _fake_trainer(metrics: dict) -> object:
    from types import SimpleNamespace

    callback = SimpleNamespace(last_model_path="runs/x/checkpoints/last.ckpt", best_model_path="")
    return SimpleNamespace(
        callback_metrics=metrics, current_epoch=2, global_step=17, checkpoint_callback=callback
    )


def test_nan_guard_stops_on_the_first_bad_loss():
    from callbacks.nan_guard import NaNGuard

    guard, finite = NaNGuard(), {"train/loss": torch.tensor(0.5)}
    guard.on_train_batch_end(_fake_trainer(finite), None, {"loss": torch.tensor(0.5)}, None, 0)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 17 \(loss=nan\).*last\.ckpt"):
        guard.on_train_batch_end(
            _fake_trainer({}), None, {"loss": torch.tensor(float("nan"))}, None, 1
        )


def test_nan_guard_checks_logged_losses_and_before_saving():
    from callbacks.nan_guard import NaNGuard

    guard = NaNGuard(check_every_n_steps=100)
    bad = _fake_trainer({"train/loss_d": torch.tensor(float("inf")), "val/loss": torch.tensor(1.0)})
    guard.on_train_batch_end(bad, None, None, None, 0)  # manual optimization: no outputs
    with pytest.raises(FloatingPointError, match="Non-finite loss"):
        guard.on_save_checkpoint(bad, None, {})
    ignored = _fake_trainer({"val/loss": torch.tensor(float("nan"))})  # not a training loss
    fresh = NaNGuard()
    fresh.on_train_batch_end(ignored, None, None, None, 0)
    fresh.on_save_checkpoint(ignored, None, {})


def test_rng_states_round_trip_through_a_safe_checkpoint(tmp_path):
    import random

    import numpy as np

    from callbacks.rng_state import RNGStateCheckpoint

    callback = RNGStateCheckpoint()
    torch.save({"rng": callback.state_dict()}, tmp_path / "rng.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    callback.load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["rng"])
    torch.testing.assert_close(torch.rand(3), expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
