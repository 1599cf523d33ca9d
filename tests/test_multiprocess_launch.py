"""Runs of several processes: one run folder whatever the world size, and the launches users copy.

In-process (fast): the CLI refuses processes started apart without a shared ``LATENTLAB_RUN_DIR``,
and a process whose Trainer is not rank zero creates nothing. As subprocesses on CPU (gloo, slow):
DDP on one node and a simulated two-node launch write one folder each, with the same numbers; the
README's ``make experiment`` multi-GPU example; its ``sbatch`` line through a stand-in ``srun``,
then ``RESUME=1`` on both ranks.
"""

from __future__ import annotations

import re
import shlex
import sys
import warnings
from pathlib import Path

import cli_runs
import pytest
import yaml
from cli_runs import FAST, NAME, REPO, data_flags
from ddp_runs import (
    SLURM_SCRIPT,
    clean_env,
    cpu_flags,
    epoch_metrics,
    metric_rows,
    node_env,
    only_run_dir,
    run_ddp,
    run_multinode,
    run_processes,
    run_slurm_script,
    stage_metrics,
)

from experiments.__main__ import main
from experiments.cli import LatentLabCLI
from experiments.errors import SetupError
from experiments.run_dirs import RUN_DIR_ENV, choose_run_dir
from experiments.wandb_setup import WANDB_ID_FILE

TWO_NODES = cpu_flags(devices=1, nodes=2, strategy="ddp")
MULTI_GPU = "Multi-GPU and multi-node"  # README.md's section
SYNTHETIC = "face_attributes/synthetic_tiny"  # the experiment the README examples are run with


@pytest.fixture
def restore_rank():
    """A Trainer sets the process's rank for Lightning's rank-zero helpers: undo it."""
    from lightning.pytorch.utilities import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

    saved = rank_zero_only.rank, utils_rank_zero_only.rank
    yield
    rank_zero_only.rank, utils_rank_zero_only.rank = saved


def _cli(args: list[str], environ: dict[str, str]) -> LatentLabCLI:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return LatentLabCLI(args=args, run=False, environ={"WANDB_MODE": "disabled", **environ})


def _one_wandb_run(run_dir: Path) -> str:
    """The W&B run id of ``run_dir``: its id file's, which every offline run folder carries."""
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert offline and all(p.name.endswith(f"-{run_id}") for p in offline), offline
    return run_id


# ---------------------------------------------------------------------------- in-process
@pytest.mark.usefixtures("restore_global_state", "restore_rank")
def test_ranks_started_apart_need_one_run_folder(experiment_args, tmp_path, monkeypatch, capsys):
    """Two nodes, no LATENTLAB_RUN_DIR, not resuming: each node would pick its own folder, so the
    CLI refuses (exit 2, naming the variable and a value for it) and makes no folder."""
    args = [*experiment_args, *TWO_NODES]
    with pytest.raises(SetupError, match=f"{RUN_DIR_ENV} must name the run folder.*num_nodes=2"):
        _cli(args, {})
    elsewhere = tmp_path / "elsewhere" / "x"
    with pytest.raises(SetupError, match=f"{RUN_DIR_ENV}={elsewhere} is not under"):
        _cli(args, {RUN_DIR_ENV: str(elsewhere)})
    assert not (tmp_path / "runs").exists()

    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["fit", *args])
    assert exited.value.code == 2
    hint = re.search(rf"`export {RUN_DIR_ENV}=(\S+)`", capsys.readouterr().err)
    assert hint and Path(hint[1]).parent == tmp_path / "runs" / NAME and not Path(hint[1]).exists()

    shared = tmp_path / "runs" / NAME / "shared"  # what the hint says: accepted
    cli = _cli(args, {RUN_DIR_ENV: str(shared)})
    assert cli.run_dir == shared and shared.is_dir() and cli.trainer.global_rank == 0


@pytest.mark.usefixtures("restore_global_state", "restore_rank")
def test_a_process_that_is_not_rank_zero_writes_nothing(experiment_args, tmp_path, monkeypatch):
    """The second node of a launch (rank 1 by its Trainer, though no rank variable tells Lightning's
    rank-zero helpers so before the Trainer exists) neither creates the shared folder nor writes
    its W&B id file: rank zero does both."""
    monkeypatch.setenv("NODE_RANK", "1")
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    shared = tmp_path / "runs" / NAME / "shared"
    cli = _cli([*experiment_args, *TWO_NODES], {RUN_DIR_ENV: str(shared)})
    assert cli.trainer.global_rank == 1 and cli.run_dir == shared
    assert not shared.exists()


def test_the_shared_folder_is_found_however_the_root_is_written(tmp_path, monkeypatch):
    """LATENTLAB_RUN_DIR and --run.root may name the same place differently (absolute, relative,
    with ./); the folder of another name is still not taken."""
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "runs" / NAME / "shared"
    for root in (Path("runs"), Path("./runs"), tmp_path / "runs"):
        for given in (shared, Path("runs") / NAME / "shared"):
            chosen = choose_run_dir(root, NAME, resume=False, environ={RUN_DIR_ENV: str(given)})
            assert chosen == given
    other = choose_run_dir(
        Path("runs"), "m/other", resume=False, environ={RUN_DIR_ENV: str(shared)}
    )
    assert other.parent == Path("runs") / "m/other"


def test_the_launch_docs_name_the_variables_of_the_simulated_launch():
    """README's launch without Slurm sets every variable the simulated multi-node launch sets (and
    the Slurm script names them: what SLURM gives in their place, and LATENTLAB_RUN_DIR)."""
    variables = set(node_env(0, 2, 1, 29500, Path("runs/x/y")))
    assert variables == {"MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "WORLD_SIZE", RUN_DIR_ENV}
    launch = re.search(r"```\n(MASTER_ADDR=.*?)```", _readme_section(MULTI_GPU), re.DOTALL)
    assert launch, "README's multi-GPU section: no launch without Slurm"
    assert set(re.findall(r"\b([A-Z_]+)=", launch[1])) >= variables
    script = SLURM_SCRIPT.read_text()
    assert all(name in script for name in variables)


def test_a_failed_or_hung_launch_shows_each_process_and_leaves_none_running(tmp_path):
    """The harness: a launch with a failing and a hanging process fails at the timeout with every
    process's state and output tail, and the hanging one's child is killed with it."""
    child = tmp_path / "child.pid"
    hang = [
        "import subprocess, time",
        "p = subprocess.Popen(['sleep', '60'])",
        f"open({str(child)!r}, 'w').write(str(p.pid))",
        "print('waiting', flush=True)",
        "time.sleep(60)",
    ]
    scripts = {
        "fine": "print('done')",
        "broken": "import sys; print('bad input'); sys.exit(3)",
        "stuck": "; ".join(hang),
    }
    launches = [(k, [sys.executable, "-c", v], clean_env()) for k, v in scripts.items()]
    with pytest.raises(AssertionError) as failed:
        run_processes(launches, timeout=10)
    message = str(failed.value)
    assert message.startswith("fine: exit 0, broken: exit 3, stuck: timed out")
    assert "done" in message and "bad input" in message and "waiting" in message
    stat = Path(f"/proc/{child.read_text()}/stat")  # gone, or a zombie left to be reaped
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


# ---------------------------------------------------------------------------- subprocesses
@pytest.mark.slow
def test_ddp_and_a_simulated_two_node_launch_make_one_run_each_with_the_same_numbers(
    synthetic_faces_root, tmp_path
):
    """Two ranks on one node (Lightning starts the second), and two `nodes` started apart with
    MASTER_ADDR/MASTER_PORT/NODE_RANK/WORLD_SIZE and one LATENTLAB_RUN_DIR: each run is one
    folder (one config.yaml, one metrics.csv, one W&B run whose id is in the folder's id file),
    nothing is written outside the run root, and both report the same epochs and test."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    offline = {"WANDB_MODE": "offline"}
    ddp, nodes = tmp_path / "ddp", tmp_path / "nodes"
    args = cli_runs.experiment_args(synthetic_faces_root, ddp)
    run_ddp("run", args, devices=2, env=offline, cwd=cwd)
    shared = nodes / NAME / "2026-01-01_00-00-00_job1"
    args = cli_runs.experiment_args(synthetic_faces_root, nodes)
    launched = run_multinode("run", args, nodes=2, run_dir=shared, env=offline, cwd=cwd)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in launched[1].output  # the second node was rank 1
    runs = {"ddp": only_run_dir(ddp, NAME), "nodes": only_run_dir(nodes, NAME)}
    assert runs["nodes"] == shared
    assert not any(cwd.iterdir()), sorted(cwd.rglob("*"))
    for run_dir in runs.values():
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["trainer"]["strategy"] == "ddp"
        ours = [p for p in run_dir.rglob("*.yaml") if "wandb" not in p.relative_to(run_dir).parts]
        assert sorted(ours) == [run_dir / "config.yaml", run_dir / "hparams.yaml"]
        assert [p.name for p in run_dir.rglob("metrics.csv")] == ["metrics.csv"]
        _one_wandb_run(run_dir)
        assert sorted(epoch_metrics(run_dir, "val")) == [0, 1]
    assert epoch_metrics(runs["ddp"], "val") == epoch_metrics(runs["nodes"], "val")
    assert stage_metrics(runs["ddp"], "test") == stage_metrics(runs["nodes"], "test")
    assert stage_metrics(runs["ddp"], "test")


def _readme_section(section: str) -> str:
    """The text of README.md's ``## <section>``."""
    text = (REPO / "README.md").read_text()
    return text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]


def _readme_command(start: str) -> list[str]:
    """The one line of the ``bash`` blocks of README's multi-GPU section that starts so, split."""
    blocks = re.findall(r"```bash\n(.*?)```", _readme_section(MULTI_GPU), flags=re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"README's multi-GPU section: one `{start} ...` line, got {lines}"
    return shlex.split(lines[0], comments=True)


def _fast_flags(synthetic_faces_root: Path) -> list[str]:
    """FAST and the data, without a device count (the command under test sets it)."""
    flags = [f for f in FAST if not f.startswith("--trainer.devices=")]
    return [*flags, *data_flags(synthetic_faces_root)]


@pytest.mark.slow
def test_readme_multi_gpu_example_runs(synthetic_faces_root, tmp_path):
    """README's `make experiment NAME=... ARGS="--trainer.devices=4 --trainer.strategy=ddp"`, as
    written but on the tiny twin with 2 CPU processes: one run folder, made with those flags."""
    make, target, *variables = _readme_command("make experiment")
    settings = dict(v.split("=", 1) for v in variables)
    readme_args = re.sub(r"--trainer\.devices=\d+", "--trainer.devices=2", settings["ARGS"])
    assert "--trainer.devices=2" in readme_args and "--trainer.strategy=ddp" in readme_args
    root = tmp_path / "runs"
    args = [*_fast_flags(synthetic_faces_root), f"--run.root={root}", *shlex.split(readme_args)]
    venv = Path(sys.executable).parents[1]  # the make targets' install step is already done
    command = [make, "-s", "-C", str(REPO), f"VENV={venv}", "-o", f"{venv}/.installed", target,
               f"NAME={SYNTHETIC}", f"ARGS={shlex.join(args)}"]  # fmt: skip
    run_processes([("make", command, clean_env())])
    run_dir = only_run_dir(root, SYNTHETIC)
    trainer = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    recorded = (str(trainer["devices"]), trainer["strategy"], trainer["accelerator"])
    assert recorded == ("2", "ddp", "cpu")
    assert stage_metrics(run_dir, "test")


@pytest.mark.slow
def test_readme_sbatch_example_runs_and_resumes_on_every_rank(synthetic_faces_root, tmp_path):
    """README's `sbatch experiments/cluster/slurm_multinode.sh NAME` through a stand-in srun
    (2 nodes x 1 task on CPU; `--trainer.accelerator=cpu` after NAME wins over the script's gpu):
    one run folder named after the job; then `RESUME=1` on both ranks continues that folder."""
    sbatch, script, _name, *readme_args = _readme_command("sbatch ")
    assert sbatch == "sbatch"
    root = tmp_path / "runs"
    env = {"PYTHON": sys.executable, "RUN_ROOT": str(root), "WANDB_MODE": "offline"}
    cpu = "--trainer.accelerator=cpu"  # after NAME: wins over the script's gpu
    args = [SYNTHETIC, *readme_args, *_fast_flags(synthetic_faces_root), cpu]
    first = run_slurm_script([*args, "--trainer.max_epochs=1"], env=env, script=REPO / script)
    run_dir = only_run_dir(root, SYNTHETIC)
    assert "_job" in run_dir.name and "GLOBAL_RANK: 1, MEMBER: 2/2" in first.output
    trainer = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    recorded = (trainer["accelerator"], trainer["num_nodes"], str(trainer["devices"]))
    assert recorded == ("cpu", 2, "1")
    run_id = _one_wandb_run(run_dir)

    run_slurm_script([*args, "--trainer.max_epochs=2"], env={**env, "RESUME": "1"},
                     script=REPO / script)  # fmt: skip
    assert only_run_dir(root, SYNTHETIC) == run_dir and _one_wandb_run(run_dir) == run_id
    assert sorted(epoch_metrics(run_dir, "val")) == [0, 1]
    val_rows = [row["epoch"] for row in metric_rows(run_dir) if "val/loss" in row]
    assert val_rows == sorted(set(val_rows)), val_rows  # each epoch once
