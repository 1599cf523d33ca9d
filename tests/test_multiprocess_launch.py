"""Runs of several processes: one run folder whatever the world size.

In-process: the CLI refuses processes started apart without a shared ``LATENTLAB_RUN_DIR``, and a
process whose Trainer is not rank zero creates nothing.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from cli_runs import NAME

from experiments.__main__ import main
from experiments.cli import LatentLabCLI
from experiments.errors import SetupError
from experiments.run_dirs import RUN_DIR_ENV, choose_run_dir

TWO_NODES = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.num_nodes=2",
    "--trainer.strategy=ddp",
]


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
