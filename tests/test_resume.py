"""Resume is honest: it refuses changed settings, records changed trainer settings, and a run
folder moved elsewhere resumes and tests its own best checkpoint."""

from __future__ import annotations

import csv
import shutil
import warnings

import pytest
import torch
from cli_runs import NAME, run_cli
from omegaconf import OmegaConf

from callbacks.run_checkpoint import RunCheckpoint
from experiments.errors import SetupError
from experiments.resume import changed_settings, refusal_message

# every test here runs the CLI, which seeds and may switch deterministic algorithms on
pytestmark = pytest.mark.usefixtures("restore_global_state")


def _one_epoch(experiment_args):
    args = [*experiment_args, "--trainer.callbacks=[]", "--trainer.max_epochs=1"]
    return run_cli(["fit", *args]), args


def test_changed_settings_names_fixed_keys_only():
    saved = {
        "seed_everything": 0,
        "model": {"class_path": "M", "init_args": {"lr": 0.001, "depth": 2}},
        "data": {"init_args": {"root": "/a", "batch_size": 8, "num_workers": 2}},
        "trainer": {"max_epochs": 2, "gradient_clip_val": None},
        "checkpoint": {"monitor": "val/loss", "dirpath": "/old"},
    }
    current = OmegaConf.to_container(OmegaConf.create(saved))
    current["model"]["init_args"]["lr"] = 1e12
    current["data"]["init_args"].update(root="/b", num_workers=0, batch_size=16)
    current["trainer"].update(max_epochs=5, gradient_clip_val=1.0)
    current["checkpoint"]["dirpath"] = "/new"
    assert changed_settings(saved, current) == [
        ("data.init_args.batch_size", 8, 16),
        ("model.init_args.lr", 0.001, 1e12),
        ("trainer.gradient_clip_val", None, 1.0),
    ]
    current["model"]["init_args"]["width"] = 4  # a key the run did not have
    assert ("model.init_args.width", None, 4) in changed_settings(saved, current)
    message = refusal_message("runs/x/t", "m/d", [("model.init_args.lr", 0.001, 1e12)])
    assert f"model.init_args.lr: 0.001 in the run, {1e12!r} now" in message
    assert f"--run.init_from=runs/x/t/checkpoints/last.ckpt --model.init_args.lr={1e12}" in message


def test_resume_refuses_a_changed_learning_rate_and_records_nothing(experiment_args):
    first, args = _one_epoch(experiment_args)
    config = (first.run_dir / "config.yaml").read_text()
    last = first.run_dir / "checkpoints" / "last.ckpt"
    hparams = torch.load(last, weights_only=True)["hyper_parameters"]
    with pytest.raises(SetupError, match=r"(?s)model\.init_args\.lr: 0\.003 .*--run\.init_from="):
        run_cli(["fit", *args, "--run.resume=true", "--model.init_args.lr=1e12"])
    assert (first.run_dir / "config.yaml").read_text() == config
    assert torch.load(last, weights_only=True)["hyper_parameters"] == hparams


def test_resume_applies_and_records_a_longer_schedule(experiment_args):
    first, args = _one_epoch(experiment_args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_cli(["fit", *args, "--run.resume=true", "--trainer.max_epochs=2"])
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]  # by design
    assert resumed.run_dir == first.run_dir and resumed.trainer.current_epoch == 2
    assert OmegaConf.load(first.run_dir / "config.yaml").trainer.max_epochs == 2


def test_a_moved_run_folder_resumes_and_tests_its_own_best_checkpoint(experiment_args, tmp_path):
    """The best checkpoint's path is kept relative to the run folder, so after moving the folder
    (the old place gone) the resumed run tests the file where it is now."""
    args = [*experiment_args, "--trainer.callbacks=[]", "--trainer.max_epochs=1"]
    first = run_cli(["fit", *args, "--run.evaluate=true"])
    best = first.trainer.checkpoint_callback.best_model_path
    assert best and "last" not in best  # synthetic_tiny monitors a metric
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "runs", moved)
    resume = ["--run.evaluate=true", "--run.resume=true", f"--run.root={moved}"]
    resumed = run_cli(["fit", *args, *resume])
    run_dir = moved / NAME / first.run_dir.name
    assert resumed.run_dir == run_dir
    assert resumed.trainer.checkpoint_callback.best_model_path.startswith(str(run_dir))
    # the first run's test row (logged after epoch 0) is trimmed on resume: this one is new
    with (run_dir / "metrics.csv").open() as file:
        assert sum(bool(row.get("test/loss")) for row in csv.DictReader(file)) == 1


def test_checkpoint_state_paths_are_relative_and_follow_the_folder(tmp_path):
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    saver = RunCheckpoint(dirpath=old, monitor="val/loss")
    saver.best_model_path = str(old / "epoch=0-step=8.ckpt")
    saver.last_model_path = str(old / "last.ckpt")
    saver.best_k_models = {saver.best_model_path: torch.tensor(0.5)}
    state = saver.state_dict()
    assert state["best_model_path"] == "epoch=0-step=8.ckpt" and state["dirpath"] == "."
    loader = RunCheckpoint(dirpath=new, monitor="val/loss")
    loader.load_state_dict(state)
    assert loader.best_model_path == str(new / "epoch=0-step=8.ckpt")
    assert loader.last_model_path == str(new / "last.ckpt")
    assert list(loader.best_k_models) == [str(new / "epoch=0-step=8.ckpt")]
    # a state written by Lightning's own ModelCheckpoint (absolute paths) moves along too
    plain = {**state, "dirpath": str(old), "best_model_path": str(old / "b.ckpt")}
    loader.load_state_dict(plain)
    assert loader.best_model_path == str(new / "b.ckpt")
