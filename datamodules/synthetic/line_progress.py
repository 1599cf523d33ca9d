"""Progress of writing a twin in a log file (Slurm, nohup, a pipe), where rich's bar prints only
once, at the end: a line when a part starts, every ``interval`` seconds, and when it is done."""

from __future__ import annotations

import time

__all__ = ["LineProgress"]


class LineProgress:
    """The part of rich's Progress that writing uses, as a line when a part starts, every
    ``interval`` seconds, and when it is done."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._tasks: dict[str, list[float]] = {}  # label -> [done, total, start, last line]

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, label: str, total: int) -> str:
        now = time.perf_counter()
        self._tasks[label] = [0, total, now, now]
        print(f"{label}: writing {total} images", flush=True)
        return label

    def advance(self, label: str, n: int) -> None:
        task = self._tasks[label]
        task[0] += n
        now = time.perf_counter()
        if task[0] >= task[1] or now - task[3] >= self.interval:
            task[3] = now
            state = "done" if task[0] >= task[1] else "written"
            done, total, seconds = int(task[0]), int(task[1]), now - task[2]
            print(f"{label}: {done}/{total} {state} ({seconds:.0f} s)", flush=True)
