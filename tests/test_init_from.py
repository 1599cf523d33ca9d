"""``--run.init_from`` with parts: a submodule of one run's checkpoint into a submodule of a model
of another class, strict within it, recorded in ``config.yaml``, and refused before any run folder
is made when names, keys or shapes disagree.

Tiny modules defined here (a teacher with an ``encoder``, a student whose ``teacher`` has the
encoder's layout) keep every test to a few seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml
from lightning import LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.cli import LatentLabCLI
from experiments.init_from import InitFromError


def _encoder(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width))


class _Tiny(LightningModule):
    def training_step(self, batch, batch_idx):
        return self(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Teacher(_Tiny):
    """The first stage: ``encoder`` and a classification ``head``."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.encoder, self.head = _encoder(width), nn.Linear(width, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


class Student(_Tiny):
    """A later stage, another class: a ``teacher`` shaped like Teacher's encoder, a ``decoder``."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.teacher, self.decoder = _encoder(width), nn.Linear(width, 3)

    def forward(self, x):
        return self.decoder(self.teacher(x))


class TinyData(LightningDataModule):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 3)), batch_size=4)


def _cli(tmp_path: Path, model: str, *extra: str, command: str | None = None) -> LatentLabCLI:
    args = [command] if command else []
    args += [
        f"--model={__name__}.{model}",
        f"--data={__name__}.TinyData",
        f"--run.root={tmp_path / 'runs'}",
        "--run.name=student",
        "--seed_everything=3",
        "--trainer.accelerator=cpu",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return LatentLabCLI(args=args, run=command is not None, environ={"WANDB_MODE": "disabled"})


def _checkpoint(path: Path, state_dict: dict) -> Path:
    torch.save({"state_dict": state_dict, "epoch": 0}, path)
    return path


def _parts(tmp_path: Path, *parts: dict) -> str:
    """A YAML config with ``run.init_from`` as a list of parts, as an experiment would hold it."""
    path = tmp_path / "parts.yaml"
    path.write_text(yaml.safe_dump({"run": {"init_from": list(parts)}}))
    return f"--config={path}"


def _teacher_state(width: int = 4, seed: int = 11) -> dict:
    torch.manual_seed(seed)
    return Teacher(width).state_dict()


def test_a_submodule_into_a_module_of_another_class(tmp_path):
    """Teacher.encoder -> Student.teacher: exactly the target's weights change, the run records
    the checkpoint it resolved (here latest:<name>, a run made through the CLI)."""
    teacher = _cli(
        tmp_path, "Teacher", "--run.name=teacher", "--trainer.max_epochs=1", command="fit"
    )
    encoder = {k: v.clone() for k, v in teacher.model.encoder.state_dict().items()}
    part = {"checkpoint": "latest:teacher", "source": "encoder", "target": "teacher"}
    fresh = _cli(tmp_path, "Student", "--run.name=fresh")  # same seed, no init_from
    student = _cli(
        tmp_path, "Student", _parts(tmp_path, part), "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=0", command="fit",
    )  # fmt: skip
    for key, value in student.model.teacher.state_dict().items():
        torch.testing.assert_close(value, encoder[key], rtol=0, atol=0, msg=key)
        assert not torch.equal(value, fresh.model.teacher.state_dict()[key])
    for key, value in student.model.decoder.state_dict().items():
        torch.testing.assert_close(value, fresh.model.decoder.state_dict()[key], rtol=0, atol=0)
    saved = yaml.safe_load((student.run_dir / "config.yaml").read_text())["run"]["init_from"]
    last = teacher.run_dir / "checkpoints" / "last.ckpt"
    assert saved == [{"checkpoint": str(last), "source": "encoder", "target": "teacher"}]


def test_a_key_prefix_with_a_dot_and_several_parts_in_order(tmp_path):
    """``source: "encoder."`` equals ``source: encoder``; a later part overrides an earlier one."""
    first = _checkpoint(tmp_path / "a.ckpt", _teacher_state(seed=1))
    second = _checkpoint(tmp_path / "b.ckpt", _teacher_state(seed=2))
    parts = [
        {"checkpoint": str(first), "source": "encoder.", "target": "teacher"},
        {"checkpoint": str(second), "source": "encoder.2", "target": "teacher.2"},
    ]
    student = _cli(tmp_path, "Student", _parts(tmp_path, *parts))
    got, a, b = student.model.state_dict(), _teacher_state(seed=1), _teacher_state(seed=2)
    torch.testing.assert_close(got["teacher.0.weight"], a["encoder.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(got["teacher.2.weight"], b["encoder.2.weight"], rtol=0, atol=0)


def test_the_whole_model_from_a_string_stays_strict(tmp_path):
    good = _checkpoint(tmp_path / "good.ckpt", Student().state_dict())
    student = _cli(tmp_path, "Student", f"--run.init_from={good}")
    expected = torch.load(good, weights_only=True)["state_dict"]
    for key, value in student.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    teacher = _checkpoint(tmp_path / "teacher.ckpt", _teacher_state())
    with pytest.raises(InitFromError, match=r"--run.init_from: the whole model of .*teacher.ckpt"):
        _cli(tmp_path, "Student", f"--run.init_from={teacher}", "--run.name=refused")
    assert not (tmp_path / "runs" / "refused").exists()


def _refused(tmp_path: Path, state_dict: dict | None, match: str, **part: str) -> None:
    path = tmp_path / "stage.ckpt"
    if state_dict is not None:
        _checkpoint(path, state_dict)
    part = {"checkpoint": str(path), "source": "encoder", "target": "teacher", **part}
    error = FileNotFoundError if state_dict is None else InitFromError
    with pytest.raises(error, match=match):
        _cli(tmp_path, "Student", _parts(tmp_path, part))
    assert not (tmp_path / "runs").exists()  # refused before any run folder


def test_refused_missing_key(tmp_path):
    state = _teacher_state()
    del state["encoder.2.bias"]
    _refused(tmp_path, state, r"1 missing \(in the model, not the checkpoint\): 2\.bias")


def test_refused_unexpected_key(tmp_path):
    state = {**_teacher_state(), "encoder.3.weight": torch.zeros(2)}
    _refused(tmp_path, state, r"1 unexpected \(in the checkpoint, not the model\): 3\.weight")


def test_refused_shape_mismatch_names_both_shapes(tmp_path):
    match = r"4 with other shapes: 0\.weight \(checkpoint \(5, 3\), model \(4, 3\)\)"
    _refused(tmp_path, _teacher_state(width=5), match)


def test_refused_unknown_target_and_source(tmp_path):
    _refused(tmp_path, _teacher_state(), r"Student has no submodule 'pupil'.*teacher, decoder",
             target="pupil")  # fmt: skip
    _refused(tmp_path, _teacher_state(), r"no weights under source 'decoder'.*encoder, head",
             source="decoder")  # fmt: skip


def test_refused_missing_checkpoint(tmp_path):
    _refused(tmp_path, None, r"--run.init_from: no checkpoint file .*stage.ckpt")
    with pytest.raises(FileNotFoundError, match="make experiment NAME=absent"):
        _cli(tmp_path, "Student", _parts(tmp_path, {"checkpoint": "latest:absent"}))
    assert not (tmp_path / "runs").exists()


def test_many_mismatches_are_counted_and_a_few_named(tmp_path):
    state = {f"encoder.extra{i}": torch.zeros(1) for i in range(8)} | _teacher_state()
    match = r"8 unexpected .*: extra0, extra1, extra2, extra3, extra4, \.\.\. \(3 more\)"
    _refused(tmp_path, state, match)


def test_a_resumed_fit_keeps_the_record_and_needs_no_stage_checkpoint(tmp_path):
    """Resuming takes the weights from last.ckpt: init_from is not resolved again."""
    stage = _checkpoint(tmp_path / "stage.ckpt", _teacher_state())
    part = {"checkpoint": str(stage), "source": "encoder", "target": "teacher"}
    args = [_parts(tmp_path, part), "--trainer.max_epochs=1"]
    first = _cli(tmp_path, "Student", *args, command="fit")
    stage.unlink()
    resumed = _cli(tmp_path, "Student", *args, "--trainer.max_epochs=2", "--run.resume=true",
                   command="fit")  # fmt: skip
    assert resumed.run_dir == first.run_dir and resumed.trainer.current_epoch == 2
    saved = yaml.safe_load((first.run_dir / "config.yaml").read_text())["run"]["init_from"]
    assert saved == [part]


def test_best_and_latest_name_the_newest_run_s_best_and_last_checkpoints(tmp_path):
    """``best:<name>`` is the monitored checkpoint that the newest run's last.ckpt records (the
    weights its test evaluated), ``latest:<name>`` its last.ckpt; an older run is not read."""
    from experiments.init_from import resolve_checkpoint

    def run(stamp: str, best: str) -> Path:
        folder = tmp_path / "stage" / stamp / "checkpoints"
        folder.mkdir(parents=True)
        state = {
            "RunCheckpoint{'monitor': 'val/loss'}": {"monitor": "val/loss", "best_model_path": best}
        }
        torch.save({"state_dict": {}, "callbacks": state}, folder / "last.ckpt")
        (folder / best).write_bytes(b"")
        return folder

    run("2026-01-01_00-00-00", "epoch=1.ckpt")
    newest = run("2026-01-02_00-00-00", "epoch=3.ckpt")
    assert resolve_checkpoint("best:stage", tmp_path) == newest / "epoch=3.ckpt"
    assert resolve_checkpoint("latest:stage", tmp_path) == newest / "last.ckpt"
    with pytest.raises(FileNotFoundError, match="best:absent.*make experiment NAME=absent"):
        resolve_checkpoint("best:absent", tmp_path)


class PredictData(TinyData):
    def predict_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 3)), batch_size=4)


class Predicting(Student):
    """A stage that trains nothing: it predicts with the weights ``run.init_from`` loads."""

    def __init__(self, width: int = 4) -> None:
        super().__init__(width)
        self.seen: list[dict] = []

    def predict_step(self, batch, batch_idx):
        self.seen.append({k: v.clone() for k, v in self.teacher.state_dict().items()})
        return self(batch[0])


def test_predict_evaluates_the_weights_init_from_loads(tmp_path):
    """``predict`` (and test, validate) with ``run.init_from``: the part is loaded before the
    run, recorded in config.yaml; a ckpt_path beside it is refused."""
    stage = _checkpoint(tmp_path / "stage.ckpt", _teacher_state())
    part = {"checkpoint": str(stage), "source": "encoder", "target": "teacher"}
    args = [_parts(tmp_path, part), f"--data={__name__}.PredictData"]
    cli = _cli(tmp_path, "Predicting", *args, command="predict")
    expected = {
        k.removeprefix("encoder."): v for k, v in _teacher_state().items() if "encoder" in k
    }
    assert len(cli.model.seen) == 2
    for key, value in expected.items():
        assert torch.equal(cli.model.seen[0][key], value), key
    saved = yaml.safe_load((cli.run_dir / "config.yaml").read_text())["run"]["init_from"]
    assert saved == [part]
    with pytest.raises(ValueError, match="excludes ckpt_path"):
        _cli(tmp_path, "Predicting", *args, f"--ckpt_path={stage}", command="predict")


def test_run_of_a_predict_only_experiment_predicts(tmp_path):
    """``run.predict_only`` (from the last config that sets it, or a flag) turns ``run`` into
    ``predict``; ``fit`` of such an experiment is refused with what to run instead."""
    from experiments.cli import predict_only
    from experiments.errors import SetupError

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("run: {predict_only: true}\n")
    second.write_text("trainer: {max_epochs: 1}\n")
    assert predict_only(["run", "--config", str(first), "--config", str(second)])
    assert not predict_only(["run", f"--config={second}"])
    assert not predict_only(["run", "--config", str(first), "--run.predict_only=false"])
    assert predict_only(["run", f"--config={second}", "--run.predict_only=true"])
    with pytest.raises(SetupError, match="trains nothing"):
        _cli(tmp_path, "Predicting", "--run.predict_only=true", command="fit")
