"""Pipeline YAMLs (experiments/pipeline_file.py) and their runner (experiments/pipeline.py).

Reading: every refused pipeline gets one error naming its file and line. Running: steps in order
in one folder, a failed step stops the pipeline with a one-line report, a resume skips finished
steps. The fast runs use ``python -m pipeline_step`` (tests/pipeline_step.py) as module steps;
the slow ones run two real CLI steps, the second loading the first with ``latest:``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import Namespace

from experiments.listing import check
from experiments.pipeline import (
    SMOKE_ARGS,
    PipelineOptions,
    StepFailed,
    parse_options,
    pipeline_config,
    run_pipeline,
    step_command,
)
from experiments.pipeline_file import PipelineError, Step, is_pipeline_file, load_pipeline
from experiments.wandb_setup import configure_wandb

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
BASE = REPO / "experiments" / "_base.yaml"
OLR = REPO / "experiments" / "olr" / "synthetic.yaml"
TIMEOUT = 600  # seconds for a pipeline of real CLI runs


def _pipeline(tmp_path: Path, text: str, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text("# a test pipeline\n" + text)
    return path


def _refused(tmp_path: Path, text: str) -> str:
    path = _pipeline(tmp_path, text)
    with pytest.raises(PipelineError) as error:
        load_pipeline(path)
    message = str(error.value)
    assert message.startswith(f"{path}:"), message
    return message.removeprefix(f"{path}:")


# ---------------------------------------------------------------------------- reading
def test_the_olr_pipeline_lists_its_stages_in_order():
    pipeline = load_pipeline(OLR)
    assert [(s.name, s.config or s.module) for s in pipeline.steps] == [
        ("teacher", "olr/synthetic_teacher"),
        ("siamese", "olr/synthetic_siamese"),
        ("probe", "olr/synthetic_probe"),
        ("decoder", "olr/synthetic_decoder"),
        ("analysis", "experiments.olr.analyze"),
    ]
    assert pipeline.steps[-1].args == ("--root", "{root}")
    assert is_pipeline_file(OLR) and not is_pipeline_file(OLR.with_name("synthetic_teacher.yaml"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "pipeline:\n  - {name: a, config: mil_lstm/synthetic_single}\n"
            "  - name: b\n    confg: mil_lstm/synthetic_single\n",
            "5: step 2: unknown key `confg`; did you mean `config`?",
        ),
        (
            "pipeline:\n  - {name: a, module: x.y}\n  - {name: a, module: x.z}\n",
            "4: step 'a': the name of the step on line 3; step names are unique",
        ),
        (
            "pipeline:\n  - {name: a, config: mil_lstm/synthetic_single, module: x}\n",
            "3: step 'a': give exactly one of `config:` and `module:`, not both",
        ),
        ("pipeline:\n  - {name: a, args: []}\n", "3: step 'a': give exactly one of"),
        (
            "pipeline:\n  - name: a\n    config: mil_lstm/synthetic_singel\n",
            "4: step 'a': no experiments/mil_lstm/synthetic_singel.yaml; closest: "
            "mil_lstm/synthetic_single",
        ),
        (
            "pipeline:\n  - {name: a, config: mil_lstm/synthetic_single}\n"
            "  - {name: b, config: mil_lstm/synthetic_single}\n",
            "4: step 'b': runs mil_lstm/synthetic_single, as step 'a' on line 3 does",
        ),
        ("pipeline:\n  - {config: mil_lstm/synthetic_single}\n", "3: step 1: give it a `name:`"),
        ("pipeline:\n  - {name: a/b, module: x}\n", "3: step 1: give it a `name:`"),
        ("pipeline:\n  - {name: a, module: x, args: --x}\n", "3: step 'a': args must be a list"),
        ("trainer: {}\npipeline:\n  - {name: a, module: x}\n", "2: unknown top-level key"),
        ("pipeline: []\n", "2: `pipeline:` must list steps"),
        ("pipeline:\n  - {name: a, config: olr/synthetic}\n", "3: step 'a': experiments/olr/"),
        (
            "pipeline:\n  - {name: s, config: olr/synthetic_siamese}\n",
            "3: step 's': run.init_from loads run olr/synthetic_teacher, no earlier step's run "
            "(earlier runs: none)",
        ),
        (
            "pipeline:\n  - {name: a, config: mil_lstm/synthetic_single}\n"
            "  - {name: b, config: mil_lstm/synthetic_single_finetune_x, args: []}\n",
            "4: step 'b': no experiments/mil_lstm/synthetic_single_finetune_x.yaml",
        ),
        (
            "pipeline:\n  - {name: a, config: mil_lstm/synthetic_single, args: [--run.name=m/a]}\n"
            "  - {name: b, config: olr/synthetic_teacher,\n"
            "     args: ['--run.init_from=[{checkpoint: latest:m/x}]']}\n",
            "4: step 'b': run.init_from loads run m/x, no earlier step's run (earlier runs: m/a)",
        ),
        (
            "pipeline:\n  - {name: a, config: mil_lstm/synthetic_single, args: [--run.name=m/a]}\n"
            "  - {name: b, config: olr/synthetic_teacher,\n"
            "     args: ['--run.init_from=[{checkpoint: best:m/y}]']}\n",
            "4: step 'b': run.init_from loads run m/y, no earlier step's run (earlier runs: m/a)",
        ),
    ],
)
def test_refused_pipelines_name_file_and_line(tmp_path, text, expected):
    assert _refused(tmp_path, text).startswith(expected)


def test_two_runs_of_one_config_need_their_own_run_names(tmp_path):
    path = _pipeline(
        tmp_path,
        "pipeline:\n  - {name: a, config: mil_lstm/synthetic_single}\n"
        "  - {name: b, config: mil_lstm/synthetic_single, args: [--run.name=m/b]}\n",
    )
    assert [s.run_name for s in load_pipeline(path).steps] == ["mil_lstm/synthetic_single", "m/b"]


def test_a_missing_module_is_refused_before_any_step_runs(tmp_path):
    path = _pipeline(tmp_path, "pipeline:\n  - {name: a, module: pipeline_step}\n")
    path.write_text(path.read_text() + "  - {name: b, module: no_such.module}\n")
    with pytest.raises(PipelineError, match=r"demo.yaml:4: step 'b': no module no_such.module"):
        run_pipeline(load_pipeline(path), PipelineOptions(root=tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- command lines
def test_a_pipeline_config_is_found_and_taken_alone(tmp_path):
    pipe = _pipeline(tmp_path, "pipeline:\n  - {name: a, module: x}\n")
    assert pipeline_config(["run", "--config", str(BASE), f"--config={pipe}", "--x=1"]) == pipe
    assert (
        pipeline_config(["run", "--config", str(BASE), "--config", str(OLR)[:-5] + "_teacher.yaml"])
        is None
    )
    with pytest.raises(PipelineError, match="run with `python -m experiments run"):
        pipeline_config(["fit", "--config", str(pipe)])
    other = REPO / "experiments" / "mil_lstm" / "synthetic_single.yaml"
    with pytest.raises(PipelineError, match="give it alone"):
        pipeline_config(["run", "--config", str(other), "--config", str(pipe)])


def test_make_takes_pipeline_names():
    assert check("olr/synthetic") is None


def test_print_config_shows_the_steps_and_runs_nothing(tmp_path):
    out = io.StringIO()
    options = PipelineOptions(root=tmp_path / "runs", print_config=True, args=["--x=1"])
    run_pipeline(load_pipeline(_module_steps(tmp_path)), options, _environ(), out)
    record = yaml.safe_load(out.getvalue())
    assert record["args"] == ["--x=1"] and [s["name"] for s in record["steps"]] == [
        "one", "two", "three",
    ]  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_options_for_the_pipeline_and_args_for_its_steps():
    options = parse_options(
        ["--run.root", "r", "--run.resume=true", "--trainer.max_epochs=1", "--run.name=m/x"]
    )
    assert (options.root, options.resume, options.name) == (Path("r"), True, "m/x")
    assert options.args == ["--trainer.max_epochs=1"] and not options.smoke
    smoke = parse_options(["--trainer.fast_dev_run=true", "--trainer.logger=false", "--x=1"])
    assert smoke.smoke and smoke.args == ["--x=1"]  # loggers on: later steps read metrics.csv
    assert parse_options(["--trainer.fast_dev_run", "2"]).smoke
    assert not parse_options(["--trainer.fast_dev_run=false"]).smoke
    with pytest.raises(PipelineError, match="--run.resume=maybe: give true or false"):
        parse_options(["--run.resume=maybe"])


def test_step_commands_run_in_the_pipeline_folder(tmp_path):
    parent = tmp_path / "runs" / "p" / "2026-01-01_00-00-00"
    cli = Step("a", config="mil_lstm/synthetic_single", args=("--trainer.max_epochs=3",))
    command = step_command(cli, parent, ["--trainer.max_epochs=1"])
    assert command[:4] == [sys.executable, "-m", "experiments", "run"]
    assert command[-3:] == [
        f"--run.root={parent}",
        "--trainer.max_epochs=3",
        "--trainer.max_epochs=1",
    ]
    module = Step("b", module="m.n", args=("--root", "{root}"))
    assert step_command(module, parent, ["--trainer.max_epochs=1"]) == [
        sys.executable, "-m", "m.n", "--root", str(parent),
    ]  # fmt: skip


def test_smoke_args_come_last_in_a_smoke_run_only(tmp_path):
    parent = tmp_path / "p"
    cli = Step("a", config="mil_lstm/synthetic_single", smoke_args=("--x=1",))
    assert step_command(cli, parent, ["--y=2"], smoke=True)[-2:] == ["--y=2", "--x=1"]
    assert "--x=1" not in step_command(cli, parent, ["--y=2"])
    module = Step("b", module="m.n", args=("--root", "{root}"), smoke_args=("--out={root}/s",))
    assert step_command(module, parent, smoke=True)[-1] == f"--out={parent}/s"
    path = tmp_path / "p.yaml"
    path.write_text("pipeline:\n  - {name: b, module: m.n, smoke_args: [--quick]}\n")
    (step,) = load_pipeline(path).steps
    assert step.smoke_args == ("--quick",) and step.as_dict()["smoke_args"] == ["--quick"]


def test_steps_share_the_w_and_b_group_of_their_pipeline(tmp_path):
    logger = Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace())
    logger.init_args.group = None
    environ = {"WANDB_MODE": "disabled", "WANDB_RUN_GROUP": "olr/synthetic/2026-01-01_00-00-00"}
    configure_wandb(logger, "olr/synthetic_teacher", tmp_path / "run", environ)
    assert logger.init_args.group == "olr/synthetic/2026-01-01_00-00-00"
    configure_wandb(logger, "olr/synthetic_teacher", tmp_path / "run", {"WANDB_MODE": "disabled"})
    assert logger.init_args.group == "olr/synthetic/2026-01-01_00-00-00"  # set: kept
    logger.init_args.group = None
    configure_wandb(logger, "olr/synthetic_teacher", tmp_path / "run", {"WANDB_MODE": "disabled"})
    assert logger.init_args.group == "olr"


# ---------------------------------------------------------------------------- running
def _module_steps(tmp_path: Path) -> Path:
    return _pipeline(
        tmp_path,
        "pipeline:\n"
        "  - {name: one, module: pipeline_step, args: ['{root}', one]}\n"
        "  - {name: two, module: pipeline_step, args: ['{root}', two]}\n"
        "  - {name: three, module: pipeline_step, args: ['{root}', three]}\n",
    )


def _environ() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(TESTS), "WANDB_MODE": "disabled"}


def test_steps_run_in_order_in_one_folder_and_a_resume_skips_finished_ones(tmp_path):
    pipeline, root = load_pipeline(_module_steps(tmp_path)), tmp_path / "runs"
    out = io.StringIO()
    parent = run_pipeline(pipeline, PipelineOptions(root=root), _environ(), out)
    assert parent.parent == root / "demo"
    assert (parent / "steps.txt").read_text().split() == ["one", "two", "three"]
    record = yaml.safe_load((parent / "pipeline.yaml").read_text())
    assert record["wandb_group"] == f"demo/{parent.name}"
    assert [s["name"] for s in record["steps"]] == ["one", "two", "three"]
    assert record["steps"][0]["command"] == f"python -m pipeline_step {parent} one"
    assert "step two ran" in (parent / "logs" / "two.log").read_text()
    assert "step two ran" in out.getvalue()
    lines = out.getvalue().splitlines()
    assert "[demo] step 2/3 'two': finished in 0m0" in "\n".join(lines)
    log = (parent / "pipeline.log").read_text()
    assert log.count("finished in") == 4  # three steps and the pipeline

    (parent / "done" / "three.yaml").unlink()  # as if the last step had been interrupted
    again = run_pipeline(pipeline, PipelineOptions(root=root, resume=True), _environ(), out)
    assert again == parent
    assert (parent / "steps.txt").read_text().split() == ["one", "two", "three", "three"]
    assert "[demo] step 1/3 'one': finished before, skipped" in out.getvalue()


def test_a_failed_step_stops_the_pipeline_and_a_resume_continues_there(tmp_path):
    pipeline, root = load_pipeline(_module_steps(tmp_path)), tmp_path / "runs"
    options = PipelineOptions(root=root, args=["--trainer.max_epochs=1"])
    out = io.StringIO()
    with pytest.raises(StepFailed) as error:
        run_pipeline(pipeline, options, {**_environ(), "PIPELINE_STEP_FAIL": "two"}, out)
    (parent,) = (root / "demo").iterdir()
    message = str(error.value)
    assert error.value.code == 3
    assert message.startswith("pipeline demo: step 2/3 'two' failed (exit 3, after 0m0")
    assert f"python -m pipeline_step {parent} two; log {parent / 'logs' / 'two.log'}" in message
    assert message.endswith(
        "continue with: python -m experiments run --config experiments/_base.yaml --config "
        f"{tmp_path / 'demo.yaml'} --run.root={root} --run.resume=true --trainer.max_epochs=1"
    )
    assert "step two fails as asked" in (parent / "logs" / "two.log").read_text()
    assert "'two': failed (exit 3)" in (parent / "pipeline.log").read_text()
    assert (parent / "steps.txt").read_text().split() == ["one"]  # three did not run
    assert sorted(p.name for p in (parent / "done").iterdir()) == ["one.yaml"]

    with pytest.raises(PipelineError, match="it ran with other ARGS"):
        run_pipeline(pipeline, PipelineOptions(root=root, resume=True), _environ(), out)
    resumed = PipelineOptions(root=root, resume=True, args=options.args)
    assert run_pipeline(pipeline, resumed, _environ(), out) == parent
    assert (parent / "steps.txt").read_text().split() == ["one", "two", "three"]


def test_a_failed_step_exits_with_its_code_and_one_error_line(tmp_path):
    """`python -m experiments run` hands a pipeline YAML to the runner."""
    pipe = _pipeline(tmp_path, "pipeline:\n  - {name: bad, module: pipeline_step, args: [., x]}\n")
    command = [sys.executable, "-m", "experiments", "run", "--config", str(BASE)]
    command += ["--config", str(pipe), f"--run.root={tmp_path / 'runs'}"]
    env = {**_environ(), "PIPELINE_STEP_FAIL": "x"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: pipeline demo: step 1/1 'bad' failed (exit 3")


# ---------------------------------------------------------------------------- real CLI steps
def _mil_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def _chain(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two CLI steps on the MNIST twin: ``pretrain``, then ``finetune`` from it with lr 0 (its
    weights stay those it loaded); the command line of the pipeline without --config."""
    from datamodules.synthetic.mnist import write_synthetic_mnist

    twin = write_synthetic_mnist(tmp_path / "twin")
    pipe = _pipeline(
        tmp_path,
        "pipeline:\n"
        "  - {name: pretrain, config: mil_lstm/synthetic_single}\n"
        "  - name: finetune\n"
        "    config: mil_lstm/synthetic_single\n"
        "    args: [--run.name=mil_lstm/synthetic_single_finetune,\n"
        "           --run.init_from=latest:mil_lstm/synthetic_single,\n"
        "           --model.init_args.lr=0.0, --model.init_args.weight_decay=0.0]\n",
        name="chain",
    )
    args = [
        f"--run.root={tmp_path / 'runs'}",
        f"--data.init_args.root={twin}",
        "--data.init_args.num_train_bags=8",
        "--data.init_args.num_val_bags=4",
        "--data.init_args.num_test_bags=4",
        "--model.init_args.feature_dim=16",
        "--model.init_args.pooling.init_args.hidden_dim=4",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    return pipe, args


def _decoy(root: Path, like: Path) -> Path:
    """A newer run of the first step's name outside the pipeline, with other weights."""
    state = torch.load(like, map_location="cpu", weights_only=True)
    state["state_dict"] = {k: v + 1 for k, v in state["state_dict"].items()}
    path = root / "mil_lstm" / "synthetic_single" / "9999-12-31_23-59-59" / "checkpoints"
    path.mkdir(parents=True)
    torch.save(state, path / "last.ckpt")
    return path / "last.ckpt"


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**_environ(), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.mark.slow
def test_a_later_step_loads_the_earlier_step_of_its_own_pipeline(tmp_path):
    """`python -m experiments run` on a pipeline: step 2's `latest:` is step 1's run inside the
    pipeline's folder, not a newer run of that name under the same root; a resume after an
    interrupted step 2 skips step 1 and continues step 2 from its last.ckpt."""
    pipe, args = _chain(tmp_path)
    root = tmp_path / "runs"
    command = [sys.executable, "-m", "experiments", "run", "--config", str(BASE)]
    command += ["--config", str(pipe), *args]
    # a first, plain run of the step-1 name, then a newer decoy of it: both outside the pipeline
    done = _run(command)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    (parent,) = (root / "chain").iterdir()
    (first,) = (parent / "mil_lstm" / "synthetic_single").glob("*/checkpoints/last.ckpt")
    shutil_copy = _decoy(root, first)
    done = _run(command)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    parent = max((root / "chain").iterdir())
    (pretrained,) = (parent / "mil_lstm" / "synthetic_single").glob("*/checkpoints/last.ckpt")
    (finetune,) = (parent / "mil_lstm" / "synthetic_single_finetune").glob("*")
    config = yaml.safe_load((finetune / "config.yaml").read_text())
    assert config["run"]["init_from"] == str(pretrained)
    assert config["run"]["root"] == str(parent)
    loaded = _mil_checkpoint_state(finetune / "checkpoints" / "last.ckpt")
    assert loaded.keys() == _mil_checkpoint_state(pretrained).keys()
    for key, value in _mil_checkpoint_state(pretrained).items():
        assert torch.equal(loaded[key], value), key
    decoy = _mil_checkpoint_state(shutil_copy)
    assert not all(torch.equal(loaded[k], decoy[k]) for k in loaded)
    assert "[chain] step 2/2 'finetune': finished in" in done.stdout

    (parent / "done" / "finetune.yaml").unlink()  # as if step 2 stopped after its last epoch
    done = _run([*command, "--run.resume=true"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "[chain] step 1/2 'pretrain': finished before, skipped" in done.stdout
    assert "'finetune': continuing:" in done.stdout and "--run.resume=true" in done.stdout
    assert (parent / "done" / "finetune.yaml").is_file()
    assert len(list((parent / "mil_lstm" / "synthetic_single_finetune").iterdir())) == 1


@pytest.mark.slow
def test_a_smoke_run_chains_one_batch_per_step_in_a_removed_folder(tmp_path):
    """`make smoke` of a pipeline: every step runs for one batch of each stage (fast_dev_run
    would save no checkpoint for `latest:`), in a temporary folder, and leaves nothing behind."""
    pipe, args = _chain(tmp_path)
    command = [sys.executable, "-m", "experiments", "run", "--config", str(BASE)]
    command += ["--config", str(pipe), *args, "--trainer.fast_dev_run=true"]
    command += ["--trainer.logger=false"]
    done = _run(command)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert " ".join(SMOKE_ARGS) in done.stdout
    assert "[chain] step 2/2 'finetune': finished in" in done.stdout
    assert not (tmp_path / "runs").exists()
    finished = done.stdout.splitlines()[-2]  # "pipeline chain: finished in ...: <folder>"
    folder = Path(finished.rpartition(": ")[2])
    assert folder.name and not folder.exists()
    assert done.stdout.splitlines()[-1] == f"Smoke run: removed {folder.parents[1]}"
