"""One stage of a method's synthetic pipeline, run as ``make experiment`` runs it, for the slow
learning tests (OLR, the disentangled AAE).

``run_stage`` runs ``python -m experiments run`` with ``experiments/_base.yaml`` and
``experiments/<method>/synthetic_<stage>.yaml`` in a subprocess, on the chain's twin
(``chain["data"]``, the twin not rewritten) and under the chain's run root (``chain["runs"]``), so
each ``best:<method>/synthetic_<stage>`` of a later stage loads this chain's run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ddp_runs import clean_env, run_processes

REPO = Path(__file__).resolve().parents[1]


def small_twin_chain(tmp_path_factory, method: str) -> dict[str, Path]:
    """A chain on a fresh small faces twin: ``{"data": its CelebA folder, "runs": a run root}``
    (``tmp_path_factory`` of a module-scoped fixture)."""
    from datamodules.synthetic.faces import write_synthetic_faces

    data = tmp_path_factory.mktemp(f"{method}_twin")
    write_synthetic_faces(data, preset="small", seed=0, progress=False)
    return {"data": data / "celeba", "runs": tmp_path_factory.mktemp(f"{method}_runs")}


def run_stage(
    chain: Mapping[str, Path],
    method: str,
    stage: str,
    *extra: str,
    name: str | None = None,
    timeout: float = 900.0,
    pythonpath: Sequence[Path] = (),
    on_twin: bool = True,
) -> Path:
    """Run ``experiments/<method>/synthetic_<stage>.yaml`` (run name ``name``, default
    ``<method>/synthetic_<stage>``) with the ``extra`` overrides; its run folder. ``on_twin``
    False: the stage's data is no image DataModule (ISTRC's cached latents), so the twin's root
    is not given to it."""
    launch = _launch(
        chain, method, stage, *extra, name=name, pythonpath=pythonpath, on_twin=on_twin
    )
    run_processes([launch], timeout=timeout)
    return _folder(chain, launch[0])


def _launch(
    chain: Mapping[str, Path],
    method: str,
    stage: str,
    *extra: str,
    name: str | None = None,
    pythonpath: Sequence[Path] = (),
    on_twin: bool = True,
    threads: int = 2,
) -> tuple[str, list[str], dict[str, str]]:
    """``(run name, command, environment)`` of one stage's run (see ``run_stage``)."""
    name = name or f"{method}/synthetic_{stage}"
    twin = [f"--data.init_args.root={chain['data']}", "--data.init_args.synthetic=null"]
    args = [
        "run",
        *("--config", str(REPO / "experiments" / "_base.yaml")),
        *("--config", str(REPO / "experiments" / method / f"synthetic_{stage}.yaml")),
        *(twin if on_twin else []),
        f"--run.root={chain['runs']}",
        f"--run.name={name}",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]
    command = [sys.executable, "-m", "experiments", *args]
    path = os.pathsep.join(dict.fromkeys(map(str, (REPO, *pythonpath))))
    env = clean_env({"OMP_NUM_THREADS": str(threads), "PYTHONPATH": path})
    return name, command, env


def _folder(chain: Mapping[str, Path], name: str) -> Path:
    (folder,) = (chain["runs"] / name).iterdir()
    return folder
