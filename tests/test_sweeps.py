"""experiments/sweep*.py: W&B's agent's command expansion, every shipped sweep file's trials
parsed by the CLI, local grid and random trials, the choice between W&B and local, and a local
sweep end to end. Nothing here needs a W&B server or the network."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments import sweep as sweep_module
from experiments import sweep_file
from experiments.run_dirs import RUN_DIR_ENV, run_name_from_configs
from experiments.sweep import TrialParser, check_trials, main, offline_reason, trial_runs
from experiments.sweep_agent import agent_args, cli_args, command_problems, expand_command
from experiments.sweep_file import SWEEPS, SweepError, load_sweep, sweep_path
from experiments.tables import REPO, find_run, read_metric, shown_path

SHIPPED = sorted(SWEEPS.glob("*.yaml"))
CLI = ["-m", "experiments", "run", "--config", "experiments/_base.yaml"]
LAMBDA = [*CLI, "--config", "experiments/minmaxcam/cub_vgg16.yaml"]


@pytest.fixture(scope="module")
def trial_parser() -> TrialParser:
    return TrialParser()


def write_sweep(folder: Path, command: list, parameters: dict, method: str = "grid") -> Path:
    path = folder / "sweep.yaml"
    config = {
        "program": "experiments/__main__.py",
        "method": method,
        "metric": {"name": "test/error", "goal": "minimize"},
        "parameters": parameters,
        "command": command,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------------------- W&B's agent
def test_expansion_is_the_agents():
    """Whole-item macros become their items; ${envvar:...} is replaced inside items; a macro
    inside a longer item stays as written; an unknown whole macro is dropped."""
    values = {"a.b": 0.5, "flag": True, "off": False, "name": "x"}
    command = [
        "${env}",
        "${interpreter}",
        "${program}",
        "--out=${envvar:HOME_X}/${envvar:UNSET_X}",
        "${args}",
        "bash -c 'echo ${args}'",
        "${args_no_boolean_flags}",
        "${args_no_hyphens}",
        "${args_json}",
        "${nope}",
    ]
    argv = expand_command(command, values, "train.py", {"HOME_X": "/h"})
    args = ["--a.b=0.5", "--flag=True", "--off=False", "--name=x"]
    assert argv == [
        "/usr/bin/env",
        "python",
        "train.py",
        "--out=/h/UNSET_X",
        *args,
        "bash -c 'echo ${args}'",
        "--a.b=0.5",
        "--flag",
        "--name=x",
        "a.b=0.5",
        "flag=True",
        "off=False",
        "name=x",
        '{"a.b": 0.5, "flag": true, "off": false, "name": "x"}',
    ]
    json_file = Path("/tmp/values.json")
    assert expand_command(["${args_json_file}"], values, None, {}, json_file) == [str(json_file)]
    assert expand_command(["${program}", "${args}"], {}, None, {}) == []


def test_argument_forms_equal_the_installed_wandb_agents():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    values = {"lr": 1e-05, "m": 4, "flag": True, "off": False, "config": "a/b.yaml", "n": None}
    theirs = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    ours = agent_args(values)
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    assert set(theirs) - set(ours) == {"args_dict"}  # a dict, not a list of command items


# ---------------------------------------------------------------------------- shipped sweep files
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_sweep_trials_parse_and_set_their_values(path, trial_parser):
    """Every trial of a grid (three draws of the others), expanded as W&B's agent does, runs the
    project's Python on the experiments CLI, parses, and its values land in the config."""
    sweep = load_sweep(path)
    assert command_problems(sweep.command, sweep.program, "here") == []
    trials = (
        sweep_file.grid_trials(sweep)
        if sweep.method == "grid"
        else sweep_file.random_trials(sweep, 3)
    )
    check_trials(sweep, trials, {}, parser=trial_parser)
    for values in trials:
        argv = expand_command(sweep.command, values, sweep.program, {})
        assert argv[0] == ".venv/bin/python" and cli_args(argv)[0] == "run"
        assert "${" not in " ".join(argv)


def test_there_are_shipped_sweeps():
    assert {p.stem for p in SHIPPED} >= {"minmaxcam_cardinality", "minmaxcam_lambda"}


def test_cardinality_trials_set_m_and_n_together(trial_parser):
    sweep = load_sweep(SWEEPS / "minmaxcam_cardinality.yaml")
    found = []
    for values in sweep_file.grid_trials(sweep):
        argv = expand_command(sweep.command, values, sweep.program, {})
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(REPO)
            config = trial_parser.parser.parse_args(cli_args(argv)[1:])
        m = config.model.init_args.samples_per_class
        assert config.data.init_args.samples_per_class == m
        found.append((m, config.data.init_args.classes_per_batch))
        runs, wanted = trial_runs(argv)  # where the runner looks is where the CLI writes
        name = run_name_from_configs([str(c) for c in config.config])
        assert runs == REPO / "runs" / name == REPO / f"runs/sweeps/minmaxcam_cardinality/m{m}"
        assert wanted["model.init_args.samples_per_class"] == m
    assert found == [(5, 12), (4, 15), (3, 20), (2, 30)]


def test_numbers_as_the_agent_writes_them_parse_and_match_run_folders(tmp_path, trial_parser):
    """str(1e-05) is '1e-05', which YAML reads as text: the CLI and the run-folder lookup still
    take it as the number."""
    decay = {"model.init_args.weight_decay": {"values": [0.0, 1.0e-5]}}
    command = [".venv/bin/python", *LAMBDA, f"--run.root={tmp_path}", "${args}"]
    sweep = load_sweep(write_sweep(tmp_path, command, decay))
    trials = sweep_file.grid_trials(sweep)
    check_trials(sweep, trials, {}, parser=trial_parser)
    argv = expand_command(sweep.command, trials[1], sweep.program, {})
    assert argv[-1] == "--model.init_args.weight_decay=1e-05"
    runs, wanted = trial_runs(argv)
    assert runs == tmp_path / "minmaxcam" / "cub_vgg16"
    assert wanted["model.init_args.weight_decay"] == "1e-05"
    run_dir = runs / "2026-01-01_00-00-00"
    run_dir.mkdir(parents=True)
    recorded = {**wanted, "model.init_args.weight_decay": 1e-05}  # as the CLI records it
    (run_dir / "config.yaml").write_text(yaml.safe_dump(_nested(recorded)))
    (run_dir / "metrics.csv").write_text("epoch,test/error\n0,0.5\n")
    assert find_run(runs, wanted, "test/error") == run_dir


# ---------------------------------------------------------------------------- refused commands
@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["bash", "-c", ".venv/bin/python -m experiments run ${args}"], "${args} inside"),
        (["${env}", "${interpreter}", *CLI, "${args}"], "runs 'python' found on PATH"),
        (["${env}", "python", *CLI, "${args}"], "runs 'python' found on PATH"),
        ([".venv/bin/python", *CLI, "${argz}"], "knows no ${argz}"),
    ],
)
def test_commands_the_agent_would_not_run_as_meant_are_refused(tmp_path, command, message):
    sweep = load_sweep(write_sweep(tmp_path, command, {"seed_everything": {"values": [1]}}))
    problems = command_problems(sweep.command, sweep.program, sweep.where("command"))
    assert any(message in p and p.startswith(f"{tmp_path}/sweep.yaml:") for p in problems)
    with pytest.raises(SweepError, match="sweep.yaml"):
        check_trials(sweep, sweep_file.grid_trials(sweep), {})


def test_a_trial_that_does_not_parse_or_set_its_value_is_refused(tmp_path, trial_parser):
    typo = {"model.init_args.crr_weigt": {"values": [5]}}
    sweep = load_sweep(write_sweep(tmp_path, [".venv/bin/python", *LAMBDA, "${args}"], typo))
    with pytest.raises(SweepError, match=r"trial 1 \(model.init_args.crr_weigt=5\).*crr_weigt"):
        check_trials(sweep, sweep_file.grid_trials(sweep), {}, parser=trial_parser)
    later = [".venv/bin/python", *LAMBDA, "${args}", "--model.init_args.crr_weight=1"]
    weight = {"model.init_args.crr_weight": {"values": [5]}}
    sweep = load_sweep(write_sweep(tmp_path, later, weight))  # the fixed value comes after
    with pytest.raises(SweepError, match="crr_weight is 1.0 in the parsed config, not 5"):
        check_trials(sweep, sweep_file.grid_trials(sweep), {}, parser=trial_parser)
    sweep = load_sweep(write_sweep(tmp_path, [".venv/bin/python", "train.py", "${args}"], weight))
    with pytest.raises(SweepError, match="does not run the experiments CLI"):
        check_trials(sweep, sweep_file.grid_trials(sweep), {}, parser=trial_parser)


def test_bad_sweep_files_name_the_file_and_line(tmp_path):
    path = write_sweep(tmp_path, [], {"a": {"values": [1]}}, method="grdi")
    with pytest.raises(SweepError, match=r"sweep.yaml:2: method is one of grid, random, bayes"):
        load_sweep(path)
    path = write_sweep(tmp_path, [], {"a": {"distribution": "uniform", "min": 0.0, "max": 1.0}})
    with pytest.raises(SweepError, match=r"sweep.yaml:7: a grid takes values"):
        sweep_file.grid_trials(load_sweep(path))
    path.write_text("method: grid\nparameters: [\n")
    with pytest.raises(SweepError, match=r"sweep.yaml:3: not valid YAML"):
        load_sweep(path)
    with pytest.raises(SweepError, match="Did you mean: make sweep NAME=minmaxcam_lambda"):
        sweep_path("minmaxcam_lamda")
    assert sweep_path("minmaxcam_lambda") == sweep_path("experiments/sweeps/minmaxcam_lambda.yaml")


# ---------------------------------------------------------------------------- trials
def test_grid_is_every_combination(tmp_path):
    parameters = {
        "b": {"values": [1, 2]},
        "a": {"min": 1, "max": 3},  # int_uniform
        "c": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.5},
        "d": {"value": "x"},
        "nested": {"parameters": {"e": {"values": [True, False]}}},
    }
    trials = sweep_file.grid_trials(load_sweep(write_sweep(tmp_path, [], parameters)))
    assert len(trials) == 2 * 3 * 2 * 2
    assert trials[0] == {"a": 1, "b": 1, "c": 0.0, "d": "x", "nested": {"e": True}}
    assert trials[-1] == {"a": 3, "b": 2, "c": 0.5, "d": "x", "nested": {"e": False}}
    assert len({str(t) for t in trials}) == len(trials)


def test_random_draws_follow_wandbs_distributions_and_the_seed(tmp_path):
    parameters = {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "inv": {"distribution": "inv_log_uniform_values", "min": 0.1, "max": 10.0},
        "exp": {"distribution": "log_uniform", "min": 0.0, "max": 1.0},
        "n": {"min": 2, "max": 4},
        "x": {"min": 2.0, "max": 4.0},
        "q": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 5},
        "c": {"values": ["a", "b"], "probabilities": [1.0, 0.0]},
        "normal": {"distribution": "normal", "mu": 5.0, "sigma": 0.1},
    }
    sweep = load_sweep(write_sweep(tmp_path, [], parameters, method="random"))
    trials = sweep_file.random_trials(sweep, 200, seed=3)
    assert (
        trials
        == sweep_file.random_trials(sweep, 200, seed=3)
        != sweep_file.random_trials(sweep, 200, seed=4)
    )
    for t in trials:
        assert 1e-4 <= t["lr"] <= 1e-2 and 0.1 <= t["inv"] <= 10.0 and 1 <= t["exp"] <= math.e
        assert t["n"] in (2, 3, 4) and isinstance(t["n"], int) and 2.0 <= t["x"] <= 4.0
        assert t["q"] in (0, 5, 10) and isinstance(t["q"], int) and t["c"] == "a"
        assert 4.0 < t["normal"] < 6.0
    logs = [math.log10(t["lr"]) for t in trials]  # uniform in log: both decades drawn
    assert min(logs) < -3.5 and max(logs) > -2.5 and {t["n"] for t in trials} == {2, 3, 4}


def test_local_bayes_and_countless_random_say_what_to_run(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, [], {"a": {"values": [1, 2, 3]}}, method="bayes"))
    with pytest.raises(SweepError, match="make sweep NAME=sweep LOCAL=1 SEARCH=random COUNT=10"):
        sweep_file.local_trials(sweep, "bayes", None, 0)
    with pytest.raises(SweepError, match="needs a number of trials: make sweep NAME=sweep LOCAL"):
        sweep_file.local_trials(sweep, "random", None, 0)
    assert len(sweep_file.local_trials(sweep, "random", 5, 0)) == 5
    assert sweep_file.local_trials(sweep, "grid", 2, 0) == [{"a": 1}, {"a": 2}]


# ---------------------------------------------------------------------------- W&B or local
def test_offline_by_itself_without_credentials_or_with_wandb_mode(tmp_path):
    no_netrc = {"NETRC": str(tmp_path / "netrc")}
    assert "no W&B credentials" in offline_reason(no_netrc)
    assert offline_reason({**no_netrc, "WANDB_API_KEY": "k", "WANDB_MODE": "offline"}) == (
        "WANDB_MODE=offline"
    )
    assert offline_reason({**no_netrc, "WANDB_MODE": "disabled"}) == "WANDB_MODE=disabled"
    assert offline_reason({**no_netrc, "WANDB_API_KEY": "k"}) is None
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password k\n")
    assert offline_reason(no_netrc) is None


def test_with_credentials_the_sweep_goes_to_wandbs_agent(tmp_path, monkeypatch, capsys):
    command = [sys.executable, *LAMBDA, "${args}"]
    weights = {"model.init_args.crr_weight": {"values": [1, 5]}}
    path = write_sweep(tmp_path, command, weights)
    created, called = [], []
    monkeypatch.setattr("wandb.sweep", lambda config, **kw: created.append((config, kw)) or "sw1")
    monkeypatch.setattr(sweep_module.subprocess, "call", lambda argv, **kw: called.append(argv))
    environ = {"NETRC": str(tmp_path / "netrc"), "WANDB_API_KEY": "k"}
    main([str(path), "--count", "2", "--", "--trainer.max_epochs=1"], environ)
    (config, kw), (agent,) = created[0], called
    assert config["command"] == [*command, "--trainer.max_epochs=1"]
    assert kw == {"entity": None, "project": "latentlab"}
    assert agent[1:] == ["agent", "--project", "latentlab", "--count", "2", "sw1"]
    assert Path(agent[0]) == Path(sys.executable).with_name("wandb")
    more = shlex.join([shown_path(Path(agent[0])), *agent[1:]])  # what starts more agents
    assert f"installed: {more}\n" in capsys.readouterr().out


# ---------------------------------------------------------------------------- running locally
def _nested(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return out


def fake_cli(fail_seeds: set[int], calls: list):
    """Instead of a trial's process: the run folder the CLI would write (config.yaml, and
    metrics.csv with test/error = seed / 10), or an exit code of 1 for ``fail_seeds``."""

    def call(argv, cwd, env, stdout, stderr):
        assert cwd == REPO and stderr == sweep_module.subprocess.STDOUT
        assert RUN_DIR_ENV not in env  # a cluster job's folder would take every trial
        runs, wanted = trial_runs(argv)
        seed = wanted["seed_everything"]
        calls.append(seed)
        stdout.write(f"trial output of seed {seed}\n")
        if seed in fail_seeds:
            return 1
        run_dir = runs / f"2026-01-01_00-00-{len(calls):02d}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(_nested(wanted)))
        (run_dir / "metrics.csv").write_text(f"epoch,step,test/error\n0,1,{seed / 10}\n")
        return 0

    return call


def test_local_sweep_ranks_trials_reports_failures_and_resumes(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    command = [sys.executable, *CLI, "--config", "experiments/mil_lstm/synthetic_single.yaml"]
    seeds = {"seed_everything": {"values": [3, 2, 1]}}
    path = write_sweep(tmp_path, [*command, f"--run.root={root}", "${args}"], seeds)
    calls: list[int] = []
    monkeypatch.setattr(sweep_module.subprocess, "call", fake_cli({2}, calls))
    argv = [str(path), "--local", "--root", str(root)]
    assert main(argv, {RUN_DIR_ENV: str(root / "job")}) == 1 and calls == [3, 2, 1]
    out = capsys.readouterr().out
    assert "Local sweep (--local): 3 grid trials" in out and "trial output of seed 2" in out
    table = (root / "sweeps" / "sweep.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    log = root / "sweeps" / "sweep" / "logs" / "trial_002.log"
    assert [r.split(" | ")[:4] for r in rows[1:]] == [
        ["| 1", "3", "1", "0.1"],
        ["| 2", "1", "3", "0.3"],
        ["| –", "2", "2", "failed (exit 1)"],
    ]
    assert f"`{log}`" in rows[-1] and "`seed_everything`" in rows[0]
    assert "`test/error`, minimized, best first" in table

    assert main(argv, {}) == 1 and calls == [3, 2, 1, 2]  # only the failed trial again
    assert capsys.readouterr().out.count(": done before, ") == 2

    calls.clear()
    monkeypatch.setattr(sweep_module.subprocess, "call", fake_cli({1, 2, 3}, calls))
    fresh = ["--root", str(tmp_path / "other"), "--", "--trainer.max_epochs=7"]
    assert main([str(path), "--local", *fresh], {}) == 1
    assert calls == [3, 2, 1][: sweep_module.MAX_FAILURES_IN_A_ROW]
    assert "trials in a row failed: the sweep stops here" in capsys.readouterr().out


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_shipped_tiny_sweep_runs_each_trial_once_and_ranks_them(
    tmp_path, synthetic_faces_root, capsys
):
    """face_attributes_synthetic_tiny_lr.yaml through the CLI, with this interpreter instead of
    .venv/bin/python (tens of seconds: two processes that import torch)."""
    config = yaml.safe_load((SWEEPS / "face_attributes_synthetic_tiny_lr.yaml").read_text())
    assert config["command"][0] == ".venv/bin/python"
    config["command"][0] = sys.executable
    path = tmp_path / "tiny_lr.yaml"
    path.write_text(yaml.safe_dump(config))
    root, data = tmp_path / "runs", Path(synthetic_faces_root)
    extra = [
        f"--data.init_args.source.init_args.root={data / 'celeba'}",
        f"--data.init_args.target.init_args.root={data / 'ffhq'}",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.enable_progress_bar=false",
        f"--run.root={root}",
    ]
    environ = {**os.environ, "WANDB_MODE": "disabled"}
    argv = [str(path), "--root", str(root), "--", *extra]
    assert main(argv, environ) == 0
    folders = sorted((root / "face_attributes" / "synthetic_tiny").iterdir())
    lrs = {
        yaml.safe_load((f / "config.yaml").read_text())["model"]["init_args"]["lr"] for f in folders
    }
    assert lrs == {1e-3, 3e-3}
    table = (root / "sweeps" / "tiny_lr.md").read_text()
    assert table in capsys.readouterr().out
    rows = [line.split(" | ") for line in table.splitlines() if line[:4] in ("| 1 ", "| 2 ")]
    assert len(rows) == 2 and float(rows[0][3]) >= float(rows[1][3])  # maximize: best first
    for row in rows:
        folder = REPO / row[4].strip(" `|")
        assert float(row[3]) == pytest.approx(read_metric(folder, "val/auroc_macro"), abs=5e-4)
    assert (root / "sweeps" / "tiny_lr" / "logs" / "trial_002.log").is_file()

    assert main(argv, environ) == 0  # finished trials are not run again
    assert sorted((root / "face_attributes" / "synthetic_tiny").iterdir()) == folders
    assert capsys.readouterr().out.count(": done before, ") == 2


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_sweep_passes_its_variables_and_needs_a_name(tmp_path):
    make = ["make", "-s", "-o", f"{tmp_path}/.installed", f"VENV={tmp_path}", "sweep"]  # no install
    missing = subprocess.run(make, cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and "Set NAME to a sweep: " in missing.stdout
    assert "minmaxcam_lambda" in missing.stdout.split()
    flags = ["NAME=minmaxcam_lambda", "LOCAL=1", "COUNT=2", "SEARCH=random", "ARGS=--a.b=1"]
    shown = subprocess.run([*make, "-n", *flags], cwd=REPO, capture_output=True, text=True)
    line = f"{tmp_path}/bin/python -m experiments.sweep minmaxcam_lambda --local --count 2 "
    assert line + "--method random -- --a.b=1" in shown.stdout
