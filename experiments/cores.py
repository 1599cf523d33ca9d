"""The CPU cores a run is given, and how it spends them: intra-op threads and DataLoader workers.

A machine's core count is not what a run may use: a Slurm task, a container's CPU quota or a
``taskset`` gives it fewer. PyTorch starts one intra-op thread per CPU the process may run on,
whatever a container's quota, and every DataLoader worker is one more busy process; more busy
threads than cores make OpenMP's threads wait for each other at every parallel region, which
slows a run far more than in proportion.
``core_budget`` counts the cores (the smallest of the CPU affinity, the cgroup CPU quota and
``SLURM_CPUS_PER_TASK``), leaves one core to the training process and gives the rest to loader
workers, up to the number the data config asks for; the training process takes the cores the
workers leave as intra-op threads. ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``, when set, decide the
threads instead (PyTorch has applied them already). ``apply_core_budget`` caps the config's
``num_workers`` and sets ``torch.set_num_threads``.

``experiments/__main__.py`` also sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set) before PyTorch
loads OpenMP, so that idle intra-op threads sleep instead of spinning on cores that another
process needs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch.utilities import rank_zero_info

CGROUP = Path("/sys/fs/cgroup")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class CoreBudget:
    """The cores a run may use and how it spends them.

    Attributes:
        cores: Cores the run is given.
        limit: What sets ``cores``: ``CPU affinity``, ``cgroup CPU quota`` or
            ``SLURM_CPUS_PER_TASK``.
        threads: Intra-op threads, or None where ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` decide.
        workers: The most loader workers any one DataLoader may start.
    """

    cores: int
    limit: str
    threads: int | None
    workers: int


def cgroup_cores(root: Path = CGROUP) -> int | None:
    """Cores of the CPU quota in ``root`` (cgroup v2 ``cpu.max``, or v1 ``cpu/cpu.cfs_*``),
    rounded up; None without a quota."""
    v2, v1 = root / "cpu.max", root / "cpu"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
    elif (v1 / "cpu.cfs_quota_us").is_file():
        quota = (v1 / "cpu.cfs_quota_us").read_text().strip()
        period = (v1 / "cpu.cfs_period_us").read_text().strip()
    else:
        return None
    if quota in ("max", "-1"):
        return None
    return max(1, math.ceil(int(quota) / int(period or 100_000)))


def _positive_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name}={value!r} in the environment: expected a positive integer")
    return int(value)


def core_budget(
    workers: int,
    environ: Mapping[str, str],
    affinity: Collection[int],
    cgroup: Path = CGROUP,
) -> CoreBudget:
    """The budget of a run whose data config asks for at most ``workers`` loader workers.

    Args:
        workers: The largest ``num_workers`` in the data config.
        environ: Read for ``SLURM_CPUS_PER_TASK``, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``.
        affinity: The CPUs the process may run on (``os.sched_getaffinity(0)``).
        cgroup: The cgroup folder holding ``cpu.max`` (v2) or ``cpu/`` (v1).
    """
    limits = {"CPU affinity": len(affinity), "cgroup CPU quota": cgroup_cores(cgroup)}
    limits["SLURM_CPUS_PER_TASK"] = _positive_int(environ, "SLURM_CPUS_PER_TASK")
    limit, cores = min(((k, v) for k, v in limits.items() if v), key=lambda item: item[1])
    workers = max(0, min(workers, cores - 1))
    explicit = any(environ.get(name, "").strip() for name in THREAD_VARIABLES)
    threads = None if explicit else max(1, cores - workers)
    return CoreBudget(cores, limit, threads, workers)


def _worker_settings(node: Any) -> list[dict]:
    """The field dicts under ``node`` (Namespaces, dicts, lists) holding an int ``num_workers``."""
    if isinstance(node, list):
        return [found for item in node for found in _worker_settings(item)]
    fields = vars(node) if isinstance(node, Namespace) else node
    if not isinstance(fields, dict):
        return []
    found = [fields] if isinstance(fields.get("num_workers"), int) else []
    return found + [f for value in fields.values() for f in _worker_settings(value)]


def apply_core_budget(
    data_config: Any,
    environ: Mapping[str, str] | None = None,
    affinity: Collection[int] | None = None,
    cgroup: Path = CGROUP,
) -> CoreBudget:
    """Cap every ``num_workers`` in ``data_config`` (a parsed ``data`` config, nested DataModules
    included) to the budget, set the intra-op threads, and say so in one line.

    ``environ`` defaults to the process's own environment, the one OpenMP read its settings from.
    """
    environ = os.environ if environ is None else environ
    affinity = os.sched_getaffinity(0) if affinity is None else affinity
    settings = _worker_settings(data_config)
    wanted = max((fields["num_workers"] for fields in settings), default=0)
    budget = core_budget(wanted, environ, affinity, cgroup)
    for fields in settings:
        fields["num_workers"] = min(fields["num_workers"], budget.workers)
    if budget.threads is not None:
        torch.set_num_threads(budget.threads)
    capped = f" (num_workers {wanted} capped)" if wanted > budget.workers else ""
    rank_zero_info(
        f"{torch.get_num_threads()} intra-op threads, {budget.workers} loader workers{capped} "
        f"on {budget.cores} cores ({budget.limit})"
    )
    return budget
