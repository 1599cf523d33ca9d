"""The run's core budget (``experiments/cores.py``): threads and loader workers fit the cores."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
from jsonargparse import Namespace

from experiments.cores import apply_core_budget, cgroup_cores, core_budget


@pytest.fixture
def no_cgroup(tmp_path):
    return tmp_path / "no_cgroup"


def _cgroup_v2(tmp_path, text: str):
    (tmp_path / "cpu.max").write_text(text + "\n")
    return tmp_path


def test_two_cores_one_worker_leave_one_intra_op_thread(no_cgroup):
    budget = core_budget(1, {}, affinity={0, 1}, cgroup=no_cgroup)
    assert (budget.cores, budget.threads, budget.workers) == (2, 1, 1)
    assert budget.limit == "CPU affinity"


def test_workers_leave_one_core_to_the_training_process(no_cgroup):
    assert core_budget(8, {}, affinity=set(range(4)), cgroup=no_cgroup).workers == 3
    one_core = core_budget(2, {}, affinity={3}, cgroup=no_cgroup)
    assert (one_core.threads, one_core.workers) == (1, 0)
    no_workers = core_budget(0, {}, affinity=set(range(8)), cgroup=no_cgroup)
    assert (no_workers.threads, no_workers.workers) == (8, 0)


@pytest.mark.parametrize(
    ("cpu_max", "cores"), [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1)]
)
def test_cgroup_v2_quota_limits_the_cores(tmp_path, cpu_max, cores):
    budget = core_budget(4, {}, affinity=set(range(64)), cgroup=_cgroup_v2(tmp_path, cpu_max))
    assert (budget.cores, budget.limit) == (cores, "cgroup CPU quota")
    assert budget.threads + budget.workers == max(cores, 1 + budget.workers)


def test_no_quota_in_cgroup_v2_or_v1(tmp_path):
    assert cgroup_cores(_cgroup_v2(tmp_path, "max 100000")) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cores(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cgroup_cores(v1) == 3


def test_slurm_cpus_per_task_limits_the_cores(no_cgroup):
    budget = core_budget(4, {"SLURM_CPUS_PER_TASK": "3"}, set(range(16)), cgroup=no_cgroup)
    assert (budget.cores, budget.limit, budget.threads, budget.workers) == (
        3,
        "SLURM_CPUS_PER_TASK",
        1,
        2,
    )


def test_the_users_thread_setting_wins_and_workers_are_still_capped(no_cgroup):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        budget = core_budget(4, {name: "4"}, affinity={0, 1}, cgroup=no_cgroup)
        assert (budget.threads, budget.workers) == (None, 1)


def test_a_bad_variable_is_named(no_cgroup):
    with pytest.raises(ValueError, match="SLURM_CPUS_PER_TASK='two'"):
        core_budget(1, {"SLURM_CPUS_PER_TASK": "two"}, affinity={0, 1}, cgroup=no_cgroup)


def _label_transfer_config(source_workers: int, target_workers: int) -> Namespace:
    def module(workers: int) -> Namespace:
        return Namespace(class_path="m.D", init_args=Namespace(batch_size=8, num_workers=workers))

    init = Namespace(source=module(source_workers), target=module(target_workers))
    return Namespace(class_path="m.LabelTransfer", init_args=init)


def test_apply_caps_every_num_workers_and_sets_the_threads(no_cgroup, caplog):
    config = _label_transfer_config(source_workers=4, target_workers=0)
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO):
            budget = apply_core_budget(config, {}, affinity={0, 1}, cgroup=no_cgroup)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert budget.workers == 1
    assert config.init_args.source.init_args.num_workers == 1
    assert config.init_args.target.init_args.num_workers == 0  # never raised
    assert "1 intra-op threads, 1 loader workers (num_workers 4 capped) on 2 cores" in caplog.text


def test_apply_leaves_the_threads_to_omp_num_threads(no_cgroup):
    config = {"num_workers": 3}
    before = torch.get_num_threads()
    apply_core_budget(config, {"OMP_NUM_THREADS": "2"}, affinity={0, 1}, cgroup=no_cgroup)
    assert torch.get_num_threads() == before
    assert config == {"num_workers": 1}


def test_the_entry_point_makes_idle_openmp_threads_sleep_unless_the_user_chose():
    code = "import os, experiments.__main__; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "PASSIVE", run.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "ACTIVE", run.stderr


def test_the_benchmark_runs_the_old_setting_with_a_thread_per_core_and_openmp_defaults(
    monkeypatch,
):
    from benchmarks import bench_shared_cores as bench

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    old, new = bench._environ("old"), bench._environ("new")
    assert old["OMP_NUM_THREADS"] == str(len(os.sched_getaffinity(0)))
    assert "OMP_WAIT_POLICY" not in old and "OMP_WAIT_POLICY" not in new
    assert "OMP_NUM_THREADS" not in new  # the budget decides
    command = bench._command("new", 3, 2, "/tmp/runs")
    assert command[1:3] == ["-m", "experiments"]
    clock = next(arg.split("=", 1)[1] for arg in command if "callbacks+=" in arg)
    module, name = clock.rsplit(".", 1)
    assert getattr(__import__(module, fromlist=[name]), name) is bench.EpochClock
