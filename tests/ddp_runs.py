"""Running the real CLI (``python -m experiments ...``) as several CPU processes (gloo), and reading
back what the run wrote: for the DDP tests of every method and of the launch itself.

Three launches, each a set of subprocesses with a timeout (on timeout every process of the launch
is killed, Lightning's children included) and an assertion that shows the tail of each process's
output when one fails:

- :func:`run_single`: one process (``--trainer.devices=1``), the reference numbers;
- :func:`run_ddp`: one node, ``--trainer.devices=N --trainer.strategy=ddp``; Lightning starts the
  other ranks by re-running the command (they learn the run folder from ``LATENTLAB_RUN_DIR``);
- :func:`run_multinode`: a simulated multi-node launch, one command per node with
  ``--trainer.num_nodes=N``, and the variables that a cluster launcher sets and Lightning's
  ``LightningEnvironment`` reads (:func:`node_env`): ``MASTER_ADDR``, ``MASTER_PORT``,
  ``NODE_RANK``, ``WORLD_SIZE``, plus ``LATENTLAB_RUN_DIR`` as
  ``experiments/cluster/slurm_multinode.sh`` sets it.

:func:`run_slurm_script` runs ``experiments/cluster/slurm_multinode.sh`` as ``sbatch`` would, with a
stand-in ``srun`` (``tests/fixtures/slurm/srun``) that starts the tasks as local processes.

Every launch starts from :func:`clean_env`: the test process's environment without the variables
of a launch (ranks, master, Slurm, ``LATENTLAB_RUN_DIR``), one thread per process, W&B disabled
unless the test asks otherwise, and this repository on ``PYTHONPATH`` (so ``cwd`` may be any
folder: a test can check that no process writes outside the run root).

    from cli_runs import experiment_args
    from ddp_runs import epoch_metrics, only_run_dir, run_ddp, run_single, stage_metrics

    run_ddp("run", experiment_args(data, tmp_path / "ddp"), devices=2)
    run_single("run", experiment_args(data, tmp_path / "one"))
    ddp, one = only_run_dir(tmp_path / "ddp", NAME), only_run_dir(tmp_path / "one", NAME)
    ddp_test, one_test = stage_metrics(ddp, "test"), stage_metrics(one, "test")  # then compare
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.run_dirs import RUN_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
SLURM_SCRIPT = REPO / "experiments" / "cluster" / "slurm_multinode.sh"
FAKE_SLURM_BIN = Path(__file__).resolve().parent / "fixtures" / "slurm"  # holds `srun`
TIMEOUT_S = 300.0  # per launch; a hang fails the test instead of blocking the suite
TAIL_CHARS = 3000  # of each process's output, in a failure's message
# variables of a launch (set by a cluster launcher, by Lightning for its children, or by the CLI)
LAUNCH_VARIABLES = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "GROUP_RANK",
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "PL_GLOBAL_SEED",
    "PL_SEED_WORKERS",
    RUN_DIR_ENV,
)
LAUNCH_PREFIXES = ("SLURM_", "TORCHELASTIC_")
# a W&B run started in this (test) process leaves its service's address here; a launched process
# would join that service, where a run it resumes is still registered ("run ID ... is in use")
INHERITED_SERVICES = ("WANDB_SERVICE",)

__all__ = [
    "Finished",
    "REPO",
    "SLURM_SCRIPT",
    "TIMEOUT_S",
    "assert_finished",
    "clean_env",
    "cli_command",
    "cpu_flags",
    "epoch_metrics",
    "free_port",
    "metric_rows",
    "node_env",
    "only_run_dir",
    "run_ddp",
    "run_dirs",
    "run_multinode",
    "run_processes",
    "run_single",
    "run_script",
    "run_slurm_script",
    "stage_metrics",
]


@dataclass(frozen=True)
class Finished:
    """One process of a launch: its label (``single``, ``ddp``, ``node 1``...), command, exit code
    (None: killed at the timeout) and output (stdout and stderr, its Lightning children's
    included)."""

    label: str
    command: list[str]
    returncode: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, chars: int = TAIL_CHARS) -> str:
        status = "timed out" if self.returncode is None else f"exit {self.returncode}"
        return f"--- {self.label} ({status}): {shlex.join(self.command)}\n{self.output[-chars:]}"


# ---------------------------------------------------------------------------- environment, ports
def free_port(low: int | None = None, high: int | None = None) -> int:
    """A TCP port free on 127.0.0.1 now: any (the OS picks), or the first free in ``[low, high)``
    tried in an order drawn from the process id (for a port a test derives, e.g. from a job id)."""
    if low is None or high is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]
    span = high - low
    for step in range(span):
        port = low + (os.getpid() * 7919 + step) % span
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"No free port in [{low}, {high})")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a launched process: this one's without :data:`LAUNCH_VARIABLES`,
    Slurm/torchelastic variables and :data:`INHERITED_SERVICES`, with one thread per process,
    ``WANDB_MODE=disabled`` unless set in ``extra`` (``offline`` writes W&B's files), this
    repository on ``PYTHONPATH``, then ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (*LAUNCH_VARIABLES, *INHERITED_SERVICES) and not k.startswith(LAUNCH_PREFIXES)
    }
    path = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled", WANDB_SILENT="true", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    env.update(extra or {})
    return env


def cli_command(subcommand: str, args: Sequence[str]) -> list[str]:
    """``python -m experiments <subcommand> <args>`` with this interpreter."""
    return [sys.executable, "-m", "experiments", subcommand, *args]


def node_env(
    node_rank: int, num_nodes: int, devices: int, port: int, run_dir: Path | None
) -> dict[str, str]:
    """What a cluster launcher gives the command of node ``node_rank`` (Lightning's
    ``LightningEnvironment`` reads ``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK``; it sets
    ``WORLD_SIZE`` itself, launchers set it too), and the run folder all nodes share."""
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "NODE_RANK": str(node_rank),
        "WORLD_SIZE": str(num_nodes * devices),
    }
    if run_dir is not None:
        env[RUN_DIR_ENV] = str(run_dir)
    return env


# ---------------------------------------------------------------------------- launching
def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its session: Lightning's children too
    except ProcessLookupError:
        pass
    process.wait()


def run_processes(
    launches: Sequence[tuple[str, list[str], Mapping[str, str]]],
    timeout: float = TIMEOUT_S,
    cwd: Path = REPO,
    check: bool = True,
) -> list[Finished]:
    """Start every ``(label, command, env)`` at once, each in its own session, and wait for all,
    ``timeout`` seconds at most in total (then all are killed, with their children).

    With ``check``, :func:`assert_finished`: an ``AssertionError`` that shows each process's output
    tail unless all exited with 0.
    """
    logs = Path(tempfile.mkdtemp(prefix="latentlab-launch-"))
    started = []
    for i, (label, command, env) in enumerate(launches):
        log = (logs / f"{i}.log").open("w")
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append((label, command, process, log))
    deadline = time.monotonic() + timeout
    finished = []
    for label, command, process, log in started:
        try:
            code: int | None = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            _kill(process)
        log.close()
        finished.append(Finished(label, command, code, Path(log.name).read_text(errors="replace")))
    for _, _, process, _ in started:  # stragglers of a failed launch (a rank left waiting)
        if process.poll() is None:
            _kill(process)
    for log_file in logs.iterdir():
        log_file.unlink()
    logs.rmdir()
    if check:
        assert_finished(finished)
    return finished


def assert_finished(finished: Sequence[Finished]) -> None:
    """Every process exited with 0; else an ``AssertionError`` with each one's output tail."""
    if all(f.ok for f in finished):
        return
    states = ", ".join(
        f"{f.label}: {'timed out' if f.returncode is None else f'exit {f.returncode}'}"
        for f in finished
    )
    raise AssertionError(f"{states}\n" + "\n".join(f.tail() for f in finished))


def cpu_flags(devices: int = 1, nodes: int = 1, strategy: str | None = None) -> list[str]:
    """The Trainer flags of a launch on CPU processes: accelerator, devices (per node), nodes and,
    unless None, the strategy (``ddp``: gloo on CPU)."""
    flags = [
        "--trainer.accelerator=cpu",
        f"--trainer.devices={devices}",
        f"--trainer.num_nodes={nodes}",
    ]
    return flags + ([f"--trainer.strategy={strategy}"] if strategy else [])


def _run_one(
    label: str, command: list[str], env: Mapping[str, str] | None, timeout: float, cwd: Path,
    check: bool,
) -> Finished:  # fmt: skip
    return run_processes([(label, command, clean_env(env))], timeout, cwd, check)[0]


def run_single(
    subcommand: str,
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    cwd: Path = REPO,
    check: bool = True,
) -> Finished:
    """``python -m experiments <subcommand> <args>`` in one CPU process (the reference run)."""
    command = cli_command(subcommand, [*args, *cpu_flags()])
    return _run_one("single", command, env, timeout, cwd, check)


def run_ddp(
    subcommand: str,
    args: Sequence[str],
    devices: int = 2,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    cwd: Path = REPO,
    check: bool = True,
) -> Finished:
    """The command with ``--trainer.devices=<devices> --trainer.strategy=ddp`` on CPU processes
    (gloo) of one node: one process is started, Lightning starts the other ranks. Its flags come
    after ``args``, so they win."""
    command = cli_command(subcommand, [*args, *cpu_flags(devices, 1, "ddp")])
    return _run_one("ddp", command, env, timeout, cwd, check)


def run_multinode(
    subcommand: str,
    args: Sequence[str],
    nodes: int = 2,
    devices: int = 1,
    run_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    cwd: Path = REPO,
    check: bool = True,
) -> list[Finished]:
    """A simulated ``nodes``-node launch on this machine: one command per node, each with
    ``--trainer.num_nodes=<nodes> --trainer.devices=<devices> --trainer.strategy=ddp`` on CPU and
    :func:`node_env` (a free ``MASTER_PORT``; ``LATENTLAB_RUN_DIR=run_dir`` unless None, as for a
    resume or to see the refusal without it). Lightning starts ``devices - 1`` more processes on
    each node. Returns one :class:`Finished` per node."""
    flags = cpu_flags(devices, nodes, "ddp")
    command = cli_command(subcommand, [*args, *flags])
    port = free_port()
    envs = [{**(env or {}), **node_env(n, nodes, devices, port, run_dir)} for n in range(nodes)]
    launches = [(f"node {n}", command, clean_env(e)) for n, e in enumerate(envs)]
    return run_processes(launches, timeout, cwd, check)


def run_script(label: str, args: Sequence[str], check: bool = True) -> Finished:
    """``python <args>`` (a test's own DDP script, run from the repository root) as one launch:
    :func:`clean_env` with ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT``; Lightning starts
    the other ranks; the timeout kills them all."""
    env = clean_env({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    return run_processes([(label, [sys.executable, *map(str, args)], env)], check=check)[0]


def sbatch_option(script: Path, option: str) -> str | None:
    """The value of ``#SBATCH --<option>=<value>`` in ``script`` (None when absent)."""
    pattern = re.compile(rf"^#SBATCH\s+--{re.escape(option)}=(\S+)", re.MULTILINE)
    match = pattern.search(script.read_text())
    return match[1] if match else None


def run_slurm_script(
    args: Sequence[str],
    nodes: int = 2,
    tasks_per_node: int = 1,
    env: Mapping[str, str] | None = None,
    script: Path = SLURM_SCRIPT,
    timeout: float = TIMEOUT_S,
    check: bool = True,
) -> Finished:
    """``bash <script> <args>`` as ``sbatch --nodes=<nodes> --ntasks-per-node=<tasks_per_node>``
    would run it: the job's Slurm variables (job name from the script's ``#SBATCH --job-name``,
    a job id whose last 4 digits give Lightning a free ``MASTER_PORT``: 15000 + them), the
    repository as submit folder, and ``tests/fixtures/slurm`` first on ``PATH``, whose ``srun``
    starts the tasks as local processes. ``env`` comes last (e.g. ``PYTHON``, ``RUN_ROOT``,
    ``RESUME``: the script's own variables)."""
    port = free_port(15000, 25000)
    slurm = {
        "SLURM_JOB_ID": f"7{port - 15000:04d}",
        "SLURM_JOB_NAME": sbatch_option(script, "job-name") or Path(script).name,
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_NNODES": str(nodes),
        "SLURM_NTASKS_PER_NODE": str(tasks_per_node),
        "SLURM_NTASKS": str(nodes * tasks_per_node),
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_JOB_NODELIST": "127.0.0.1",
    }
    path = f"{FAKE_SLURM_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    launch_env = clean_env({**slurm, "PATH": path, **(env or {})})
    launch = ("sbatch", ["bash", str(script), *args], launch_env)
    return run_processes([launch], timeout, Path(tempfile.gettempdir()), check)[0]


# ---------------------------------------------------------------------------- reading a run back
def run_dirs(root: Path, name: str) -> list[Path]:
    """The run folders ``root/name/<timestamp>/`` (sorted; none when ``root/name`` is missing)."""
    folder = Path(root) / name
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def only_run_dir(root: Path, name: str) -> Path:
    """The one run folder under ``root``: ``root/name/<timestamp>/``, and nothing else in ``root``
    (no second folder, no stray file). Asserts it."""
    found = run_dirs(root, name)
    assert len(found) == 1, f"expected one run folder in {Path(root) / name}, found {found}"
    stray = [
        p
        for p in Path(root).rglob("*")
        if p != found[0] and found[0] not in p.parents and p not in found[0].parents
    ]
    assert not stray, f"beside the run folder {found[0]}: {sorted(stray)}"
    return found[0]


def metric_rows(run_dir: Path) -> list[dict[str, float]]:
    """The rows of ``run_dir/metrics.csv`` as numbers, empty cells left out."""
    with (Path(run_dir) / "metrics.csv").open(newline="") as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]


def epoch_metrics(run_dir: Path, stage: str = "val") -> dict[int, dict[str, float]]:
    """``epoch -> {"<stage>/<name>": value}``: the metrics of ``stage`` logged in each epoch of
    ``run_dir/metrics.csv`` (rows of one epoch merged, a later row winning)."""
    out: dict[int, dict[str, float]] = {}
    for row in metric_rows(run_dir):
        values = {k: v for k, v in row.items() if k.startswith(f"{stage}/")}
        if values and "epoch" in row:
            out.setdefault(int(row["epoch"]), {}).update(values)
    return out


def stage_metrics(run_dir: Path, stage: str = "test") -> dict[str, float]:
    """``{"<stage>/<name>": value}``: the last logged value of each metric of ``stage`` in
    ``run_dir/metrics.csv`` (for ``test``: what the test after fit reported)."""
    out: dict[str, float] = {}
    for row in metric_rows(run_dir):
        out.update({k: v for k, v in row.items() if k.startswith(f"{stage}/")})
    return out
