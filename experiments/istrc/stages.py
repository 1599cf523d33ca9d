"""The finished ISTRC stage runs the analysis reads, and what it builds from them.

A pipeline folder ``<root>`` holds ``<root>/<name>/<timestamp>/`` per stage (names default
``istrc/synthetic_<stage>``): the encoder E (``FaceNetTriplet``, its ``encoder``), the BEGAN (its
``discriminator.decoder`` is D_dec), the cache (a predict run: ``latents_{train,val,test}.pt``,
no checkpoint), the mapping F, the latent classifiers C_a and their label-shuffled control, and
the judge (``FaceAttributeClassifier``). Modules come from each run's best checkpoint, else its
last (``experiments.stage_runs``); the test images from the ``data`` section of the cache run's
``config.yaml``, in file order, the rows of ``latents_test.pt`` (checked by image id).

- ``Circle``: decode(z) = D_dec(F(z)), never G, clamped to [-1, 1] (an image is scored and shown
  as an image);
- ``Judge``: the judge's probabilities, its thresholds (``thresholds.json`` of its run, the test
  split's Hamming search of the attributes spec, else 0.5) and its penultimate features (the input
  of its last linear layer);
- ``TestSet``: the test images with their cached z and h, all cached labels and identities.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.progress import track
from torch import Tensor, nn

from datamodules.latents import latents_file, load_latents
from experiments.run_dirs import newest_run_dir
from experiments.stage_runs import StageRun, find_stage_run, import_class

__all__ = [
    "CACHE",
    "MODEL_STAGES",
    "Circle",
    "Judge",
    "TestSet",
    "apply_in_chunks",
    "find_cache_run",
    "find_runs",
    "load_judge",
    "load_test_set",
]

#: Stages loaded as modules (the cache stage is a folder of latents).
MODEL_STAGES = ("encoder", "began", "mapping", "classifiers", "classifiers_shuffled", "judge")
CACHE = "cache"


@torch.no_grad()
def apply_in_chunks(
    fn: Callable[[Tensor], Tensor], x: Tensor, device: torch.device, chunk: int = 256
) -> Tensor:
    """``fn`` over ``x`` in chunks of rows on ``device``, the results float32 on the CPU."""
    if x.shape[0] == 0:
        raise ValueError("apply_in_chunks: no rows")
    return torch.cat([fn(part.to(device)).float().cpu() for part in x.split(chunk)])


@dataclass
class Circle:
    """decode(z) = D_dec(F(z)) in eval mode, clamped to [-1, 1], on the CPU."""

    mapping: nn.Module
    decoder: nn.Module
    device: torch.device

    def codes(self, z: Tensor) -> Tensor:
        """F(z): (B, D) -> (B, Nh)."""
        return apply_in_chunks(self.mapping, z, self.device)

    def decode(self, z: Tensor) -> Tensor:
        """(B, D) latents -> (B, 3, S, S) images in [-1, 1]."""
        return apply_in_chunks(lambda v: self.decoder(self.mapping(v)), z, self.device).clamp(-1, 1)


@dataclass
class Judge:
    """The independent pixel-space attribute classifier on [-1, 1] images.

    Attributes:
        model: The ``FaceAttributeClassifier`` (eval mode, on ``device``).
        names: Its attribute names.
        thresholds: (L,) predicts 1 where p >= threshold.
        threshold_source: Where the thresholds come from (for the report).
        device: Where it runs.
    """

    model: nn.Module
    names: list[str]
    thresholds: Tensor
    threshold_source: str
    device: torch.device
    _features: list[Tensor] = field(default_factory=list, repr=False)

    def column(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"the judge does not know {name!r}; it knows {self.names}")
        return self.names.index(name)

    def probs(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) [-1, 1] images -> (B, L) probabilities."""
        return apply_in_chunks(lambda x: self.model(x).sigmoid(), images, self.device)

    def features(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, F): the input of the judge's last linear layer."""
        head = [m for m in self.model.modules() if isinstance(m, nn.Linear)][-1]

        def keep(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            self._features.append(args[0].flatten(1).float().cpu())

        handle = head.register_forward_pre_hook(keep)
        try:
            self._features.clear()
            apply_in_chunks(self.model, images, self.device)
            return torch.cat(self._features)
        finally:
            handle.remove()
            self._features.clear()


@dataclass
class TestSet:
    """The test split: images and what the cache holds for them, in file order.

    Attributes:
        images: (N, 3, S, S) float in [-1, 1].
        z: (N, D) cached E(x), unit rows.
        h: (N, Nh) cached D_enc(x).
        labels: (N, L) int64 in {0, 1}, every cached attribute column.
        names: The L attribute names.
        identity: (N,) identities.
        image_id: File names.
        norm_errors: max | ||z|| - 1 | of each cached split's latents.
    """

    images: Tensor
    z: Tensor
    h: Tensor
    labels: Tensor
    names: list[str]
    identity: Tensor
    image_id: list[str]
    norm_errors: dict[str, float]

    def column(self, name: str, flag: str = "attribute") -> int:
        if name not in self.names:
            raise ValueError(f"{flag}: unknown label {name!r}; the cache holds {self.names}")
        return self.names.index(name)


def find_cache_run(root: Path, name: str) -> Path:
    """The newest ``root/name/<timestamp>`` holding ``latents_test.pt``."""
    run = newest_run_dir(root, name, latents_file(".", "test").name)
    if run is None:
        raise FileNotFoundError(
            f"--cache {name}: no {root / name}/<timestamp>/latents_test.pt; run the cache stage "
            f"first (a predict run, e.g. `make experiment NAME=istrc/synthetic` runs every stage)"
        )
    return run


def load_test_set(
    cache_dir: Path,
    batch_size: int,
    progress: bool,
    data_root: Path | None = None,
    num_workers: int = 0,
) -> TestSet:
    """The test images of the cache run's data (``config.yaml``; its ``root`` replaced by
    ``data_root`` when given) and its cached latents. The images are only read: a missing data
    folder is an error, never written (as a stage's synthetic twin would be)."""
    payloads = {s: load_latents(latents_file(cache_dir, s)) for s in ("train", "val", "test")}
    test = payloads["test"]
    overrides: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
    if data_root is not None:
        overrides["root"] = str(data_root)
    data = _datamodule(cache_dir, **overrides)
    data.setup("test")
    loader = data.test_dataloader()
    ids = list(getattr(loader.dataset, "names", []))
    if ids != list(test["image_id"]):
        raise ValueError(
            f"{latents_file(cache_dir, 'test')} holds {len(test['image_id'])} rows that are not "
            f"the cache run's test images in file order ({len(ids)} images): was the cache "
            "predicted with --trainer.limit_predict_batches, or its data changed since?"
        )
    images = [
        batch["image"].float() for batch in track(loader, "test images", disable=not progress)
    ]
    errors = {
        split: (payload["z"].double().norm(dim=1) - 1).abs().max().item()
        for split, payload in payloads.items()
    }
    return TestSet(
        images=torch.cat(images),
        z=test["z"].float(),
        h=test["h"].float(),
        labels=test["attributes"].long(),
        names=list(test["attribute_names"]),
        identity=test["identity"].long(),
        image_id=list(test["image_id"]),
        norm_errors=errors,
    )


def _datamodule(run_dir: Path, **overrides: Any) -> Any:
    """The DataModule of the ``data`` section of ``run_dir/config.yaml``, with ``overrides``."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the cache run has no config")
    data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
    if "class_path" not in data:
        raise ValueError(f"{path} has no data.class_path")
    return import_class(data["class_path"])(**(dict(data.get("init_args") or {}) | overrides))


def load_judge(run: StageRun, module: nn.Module, device: torch.device, mode: str) -> Judge:
    """The judge of ``run`` with its thresholds: ``mode`` ``tuned`` (the run's
    ``thresholds.json``, else the module's tuned buffer, else 0.5) or ``half`` (0.5)."""
    names = list(module.names())
    if any(name.startswith("attr_") for name in names):
        raise ValueError(f"{run.checkpoint}: the judge's checkpoint holds no attribute names")
    thresholds, source = torch.full((len(names),), 0.5), "0.5 (as requested)"
    if mode == "tuned":
        path = run.run_dir / "thresholds.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            thresholds = torch.tensor([float(saved.get(n, 0.5)) for n in names])
            source = f"tuned on the test split ({path.name} of the judge run)"
        elif bool(getattr(module, "thresholds_tuned", False)):
            thresholds, source = module.thresholds.detach().float().cpu(), "tuned (checkpoint)"
        else:
            source = "0.5 (the judge run tuned none: no thresholds.json)"
    elif mode != "half":
        raise ValueError(f"--judge-thresholds must be tuned or half, got {mode!r}")
    if not all(math.isfinite(t) for t in thresholds.tolist()):
        raise ValueError(f"the judge's thresholds are not finite: {thresholds.tolist()}")
    return Judge(module.to(device).eval(), names, thresholds, source, device)


def find_runs(root: Path, names: dict[str, str]) -> dict[str, Any]:
    """Every model stage's ``StageRun`` and the cache folder (``names``: stage -> run name)."""
    runs: dict[str, Any] = {
        stage: find_stage_run(root, names[stage], f"--{stage.replace('_', '-')}")
        for stage in MODEL_STAGES
    }
    runs[CACHE] = find_cache_run(root, names[CACHE])
    return runs
