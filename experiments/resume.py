"""What a resumed run may change: the settings that define what is trained stay as the run began.

``RESUME=1`` continues a run from its ``last.ckpt``: the weights, the optimizer and its schedule,
the data order. A changed model, data or optimizer setting would not be used (the optimizer state
comes from the checkpoint) or would silently mix two trainings in one record, so
:func:`changed_settings` finds them and the CLI refuses, pointing to ``--run.init_from`` (a new run
that starts from the weights). Trainer settings such as ``max_epochs`` or ``devices`` apply to the
resumed part and are recorded in ``config.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FIXED_SETTINGS", "RESUME_FREE_KEYS", "changed_settings", "refusal_message"]

# config keys (prefixes) that define what is trained; a resumed run keeps them
FIXED_SETTINGS = (
    "seed_everything",
    "model",
    "data",
    "optimizer",
    "lr_scheduler",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "checkpoint.monitor",
    "checkpoint.mode",
)
# leaf names under the fixed settings that say where or how fast, not what: free to change
RESUME_FREE_KEYS = frozenset({"root", "num_workers", "pin_memory", "persistent_workers"})


def _leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(config, Mapping) and config:
        for key, value in config.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, config


def _fixed(key: str) -> bool:
    if key.rsplit(".", 1)[-1] in RESUME_FREE_KEYS:
        return False
    return any(key == p or key.startswith(p + ".") for p in FIXED_SETTINGS)


def changed_settings(
    saved: Mapping[str, Any], current: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every fixed setting that differs, by dotted key.

    A key present on one side only counts as changed (its missing value is reported as None).
    """
    before, after = dict(_leaves(saved)), dict(_leaves(current))
    keys = sorted(k for k in before.keys() | after.keys() if _fixed(k))
    return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]


def _flag_value(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def refusal_message(run_dir: str, name: str, changes: list[tuple[str, Any, Any]]) -> str:
    """Why a resume is refused, the changed keys, and the command that trains with them."""
    lines = [f"  {key}: {old!r} in the run, {new!r} now" for key, old, new in changes]
    flags = " ".join(f"--{key}={_flag_value(new)}" for key, _, new in changes if new is not None)
    return "\n".join(
        [
            f"RESUME=1 continues {run_dir} as it began, and these settings differ from its "
            "config.yaml:",
            *lines,
            "Resume without them, or start a new run from the run's weights with them:",
            f'  make experiment NAME={name} ARGS="--run.init_from={run_dir}/checkpoints/last.ckpt '
            f'{flags}"',
        ]
    )
