"""The finished runs the exemplar-SR analysis reads, by name suffix, and their test splits.

Run names are ``<prefix>_<suffix>`` (``exemplar_sr/synthetic_pwave``); ``pwave`` (m = 3) is
required, every other one optional: an absent one is recorded with the command that makes it.
A loaded run holds its module (on the analysis device, eval mode) and builds test splits from its
own ``data`` section with overrides (``num_exemplars``, the occlusion of H6), cached per override.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from datamodules.exemplar_sets import ExemplarFaces
from experiments.stage_runs import StageRun, find_stage_run

__all__ = ["OPTIONAL", "LoadedRun", "RunSet", "find_runs", "make_command"]

#: The optional runs: suffix -> what it is for.
OPTIONAL = {
    **{f"m{m}": f"Fig. 6.8: a model trained at m={m}" for m in range(6) if m != 3},
    "average": "Fig. 6.8 / 6.9: average fusion (W = 1/m)",
    "uniform1to5": "H6: trained with m uniform in 1..5",
    "occluded_pwave": "H5: PWAVE trained and tested with occluded exemplars",
    "occluded_average": "H5: average fusion trained and tested with occluded exemplars",
    "disc": "Table 6.1: x8 with the critic",
    "x16_pwave": "Table 6.1 / Fig. 6.8: x16",
    "x16_m0": "Fig. 6.8: x16 at m=0",
    "x16_disc": "Table 6.1: x16 with the critic",
}


def make_command(name: str) -> str:
    """The command that produces run ``name``."""
    return f"make experiment NAME={name}"


@dataclass
class LoadedRun:
    """One finished run: its ``StageRun``, module, and test splits by data overrides."""

    run: StageRun
    module: Any
    splits: dict[tuple, ExemplarFaces] = field(default_factory=dict)

    @property
    def scale(self) -> int:
        return int(self.module.hparams.scale)

    @property
    def has_critic(self) -> bool:
        return self.module.critic is not None

    @property
    def data_root(self) -> Path:
        """The resolved data root of the run's DataModule."""
        return Path(self.run.datamodule(num_workers=0).root)

    def split(self, num_exemplars: int, **overrides: Any) -> ExemplarFaces:
        """The test split of the run's DataModule with ``num_exemplars`` (at least 1) exemplars per
        item and ``overrides`` of its other arguments."""
        args = {"num_exemplars": max(1, num_exemplars), "num_workers": 0} | overrides
        key = tuple(sorted(args.items()))
        if key not in self.splits:
            data = self.run.datamodule(**args)
            data.prepare_data()
            data.setup("test")
            self.splits[key] = data.splits["test"]
        return self.splits[key]


@dataclass
class RunSet:
    """The required PWAVE run, the optional runs found, and the names of those missing."""

    prefix: str
    runs: dict[str, LoadedRun]
    missing: dict[str, str]  # name -> command

    def get(self, suffix: str) -> LoadedRun | None:
        return self.runs.get(suffix)

    def name(self, suffix: str) -> str:
        return f"{self.prefix}_{suffix}"


def _load(run: StageRun, device: torch.device) -> LoadedRun:
    return LoadedRun(run, run.load_module().to(device).eval())


def find_runs(root: Path, prefix: str, ablation_root: Path | None, device: torch.device) -> RunSet:
    """``<prefix>_pwave`` under ``root`` (required) and every ``OPTIONAL`` run under ``root``
    (a pipeline's own stages, such as its m = 0 run), else under ``ablation_root``."""
    required = find_stage_run(Path(root), f"{prefix}_pwave", "--prefix")
    runs = {"pwave": _load(required, device)}
    missing = {}
    places = dict.fromkeys([Path(root), Path(ablation_root or root)])  # in order, no repeats
    for suffix in OPTIONAL:
        name = f"{prefix}_{suffix}"
        found = [run for place in places if (run := _find(place, name)) is not None]
        if found:
            runs[suffix] = _load(found[0], device)
        else:
            missing[name] = make_command(name)
    return RunSet(prefix, runs, missing)


def _find(root: Path, name: str) -> StageRun | None:
    """The newest finished run ``name`` under ``root``, None when there is none."""
    try:
        return find_stage_run(root, name, "--ablation-root")
    except FileNotFoundError:
        return None
