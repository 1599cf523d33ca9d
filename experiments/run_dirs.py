"""Run folders ``<root>/<name>/<timestamp>/``: their names, the newest one, the one a run uses.

A run's name is ``<method>/<dataset>[_<variant>]``, taken from its experiment YAML. Choosing a
folder (:func:`choose_run_dir`) touches nothing on disk, so that the CLI can refuse a bad
configuration before any folder exists; the CLI creates the folder afterwards.

All processes of a run (DDP ranks) use one folder, named in ``LATENTLAB_RUN_DIR``
(:data:`RUN_DIR_ENV`): rank zero sets it for the processes Lightning starts on its node; a launch
whose processes start apart (one command per node, ``srun``) sets it for all of them
(:func:`check_shared_run_dir` refuses a new run without it).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import torch

from experiments.errors import SetupError

__all__ = [
    "best_checkpoint",
    "EXPERIMENTS_DIR",
    "RUN_DIR_ENV",
    "TIMESTAMP_FORMAT",
    "check_shared_run_dir",
    "choose_run_dir",
    "free_run_dir",
    "latest_run_dir",
    "new_run_dir",
    "newest_run_dir",
    "remove_run_dir",
    "run_name_from_configs",
]

EXPERIMENTS_DIR = Path(__file__).resolve().parent
RUN_DIR_ENV = "LATENTLAB_RUN_DIR"  # set for DDP child processes (and by cluster scripts)
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"


def _name_under_experiments(path: Path) -> str | None:
    if path.is_relative_to(EXPERIMENTS_DIR):
        return path.relative_to(EXPERIMENTS_DIR).with_suffix("").as_posix()
    parts = path.with_suffix("").parts
    if "experiments" in parts[:-1]:
        return "/".join(parts[len(parts) - parts[::-1].index("experiments") :])
    return None


def run_name_from_configs(configs: list[Any]) -> str:
    """``<method>/<dataset>[_<variant>]``: the last ``--config`` under ``experiments/`` (other
    than ``_base.yaml``) relative to it, else the file name of the last ``--config``."""
    paths = [Path(str(c)).resolve() for c in configs or [] if Path(str(c)).name != "_base.yaml"]
    if not paths:
        raise ValueError("Cannot derive --run.name: pass an experiment --config or --run.name")
    names = [n for n in map(_name_under_experiments, paths) if n is not None]
    return names[-1] if names else paths[-1].stem


def free_run_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """``root/name/<timestamp>`` (``_2``, ``_3``, ... appended when it exists), not created."""
    stamp = (now or datetime.now()).strftime(TIMESTAMP_FORMAT)
    candidate, n = root / name / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / name / f"{stamp}_{n}"
    return candidate


def new_run_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """Create ``root/name/<timestamp>`` (``_2``, ``_3``, ... appended when it exists)."""
    run_dir = free_run_dir(root, name, now)
    run_dir.mkdir(parents=True)
    return run_dir


def _stamp_key(path: Path) -> tuple[str, int]:
    stamp, suffix = path.name[:19], path.name[20:]  # "<timestamp>" or "<timestamp>_<n>"
    return stamp, int(suffix) if suffix.isdigit() else 1


def newest_run_dir(root: Path, name: str, holding: str) -> Path | None:
    """The newest ``root/name/<timestamp>`` that holds the file ``holding`` (a path relative to
    it), None when none does."""
    depth = len(Path(holding).parts)
    runs = [p.parents[depth - 1] for p in (root / name).glob(f"*/{holding}") if p.is_file()]
    return max(runs, key=_stamp_key, default=None)


def latest_run_dir(root: Path, name: str) -> Path:
    """The newest ``root/name/<timestamp>`` that holds ``checkpoints/last.ckpt``."""
    run = newest_run_dir(root, name, "checkpoints/last.ckpt")
    if run is None:
        raise FileNotFoundError(
            f"Nothing to resume: no {root / name}/<timestamp>/checkpoints/last.ckpt. "
            "Start the run without RESUME=1 (or --run.resume=false) first."
        )
    return run


def best_checkpoint(run_dir: Path) -> tuple[Path, Literal["best", "last"]]:
    """The best checkpoint that ``run_dir/checkpoints/last.ckpt`` records, else ``last.ckpt``.

    The monitored ``ModelCheckpoint``'s state in ``last.ckpt`` names its best file relative to
    the checkpoints folder (``callbacks.run_checkpoint.RunCheckpoint``) or absolutely; a named
    file that no longer exists counts as not recorded.
    """
    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"{last} is missing: the run {run_dir} did not finish an epoch")
    state = torch.load(last, map_location="cpu", weights_only=True)
    for key, value in (state.get("callbacks") or {}).items():
        if "ModelCheckpoint" not in key and "RunCheckpoint" not in key:
            continue
        best = (value or {}).get("best_model_path") or ""
        if not best or not (value or {}).get("monitor", key):
            continue
        path = Path(best) if Path(best).is_absolute() else folder / best
        if path.is_file() and path.name != last.name:
            return path, "best"
    return last, "last"


def choose_run_dir(root: Path, name: str, resume: bool, environ: Mapping[str, str]) -> Path:
    """The folder of this run, chosen without touching the disk.

    ``resume``: the newest run of ``name``. Else the folder in ``environ[RUN_DIR_ENV]`` when it
    belongs to ``name`` (set by the CLI for the DDP child processes that re-run the command, or by
    a cluster script), else a new timestamp.
    """
    if resume:
        return latest_run_dir(root, name)
    given = environ.get(RUN_DIR_ENV)
    if given and Path(given).resolve().parent == (root / name).resolve():
        return Path(given)
    return free_run_dir(root, name)


def check_shared_run_dir(run_dir: Path, environ: Mapping[str, str], why: str) -> None:
    """Refuse a new ``run_dir`` that the processes of a run started apart (``why``) do not share.

    Such processes (one command per node, or tasks of ``srun``) each choose a folder of their own
    unless every one gets the same ``environ[RUN_DIR_ENV]`` under ``<root>/<name>/``; the error
    names the variable and a value to give it.
    """
    given = environ.get(RUN_DIR_ENV)
    if given and Path(given) == run_dir:
        return
    found = f"{RUN_DIR_ENV}={given} is not under {run_dir.parent}" if given else "it is not set"
    raise SetupError(
        f"{RUN_DIR_ENV} must name the run folder when the processes of a run start apart "
        f"({why}), and {found}: each process would make a folder of its own. Give all of them "
        f"the same one, e.g. run `export {RUN_DIR_ENV}={run_dir}` before starting them "
        "(experiments/cluster/slurm_multinode.sh sets it), or add --run.resume=true to continue "
        "the newest run of this name."
    )


def new_runs_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a command that starts runs of its own (a table's seeds, a sweep's
    trials): ``environ`` without ``LATENTLAB_RUN_DIR`` (a cluster job's, or a DDP parent's), which
    would put all of those runs into that one folder."""
    return {k: v for k, v in environ.items() if k != RUN_DIR_ENV}


def remove_run_dir(run_dir: Path, root: Path) -> None:
    """Delete ``run_dir`` and then its parents up to ``root`` (excluded) that are left empty."""
    shutil.rmtree(run_dir, ignore_errors=True)
    parent, root = run_dir.parent, root.resolve()
    while parent.resolve() != root and parent.resolve().is_relative_to(root):
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent
