"""Run a function in W gloo processes on this machine, with a timeout (multi-process tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_runs import free_port


def _in_group(rank: int, world: int, port: int, fn: Callable, args: tuple) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.set_num_threads(1)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_in_group(fn: Callable[..., Any], world: int, *args: Any, timeout: float = 120.0) -> None:
    """Call ``fn(rank, world, *args)`` in ``world`` spawned processes joined in a gloo group.

    ``fn`` must be importable (module level). A process that raises fails the call; processes
    still running after ``timeout`` seconds are killed and the call fails (no hung test).
    """
    context = mp.spawn(_in_group, args=(world, free_port(), fn, args), nprocs=world, join=False)
    deadline = time.monotonic() + timeout
    # join returns False each time one process ends while others run, and raises on a failure
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            raise TimeoutError(f"{world} processes still running after {timeout} s")
