"""``LogFID``: FID (and optionally KID) of generated images against a real set, per epoch.

Features come from the FID Inception-v3 (``lightning_modules.components.inception``, float32,
autocast off) or an injected extractor. The real set's statistics are computed once and cached:

- key: ``dataset`` (the constructor's name, else the datamodule's class and saved
  hyper-parameters, loader settings left out), ``split`` (the stage: ``val``, ``test``),
  ``resolution`` (H, W of the ``real`` images, read at the epoch's first batch), ``count`` (the
  length of the stage's dataset(s), known before the epoch) and ``extractor`` (its
  ``fingerprint``: the weights file's sha256 or ``random:<seed>``, and the resize);
- in memory: after the first evaluation of a run, later epochs use the statistics held by the
  callback;
- on disk: ``<cache_dir>/<split>-<H>x<W>-n<count>-<hash of the key>.pt``, a torch file of the
  key and float64 tensors (``callbacks/generative/stats_file.py``), written by rank zero to a
  temporary name and renamed. A file that is damaged or holds another key is not used: a
  warning names it and the statistics are recomputed and rewritten.

When the statistics are found at the epoch's first batch, the epoch runs the extractor on the
``fake`` images only (``real`` is never extracted). An epoch whose real-image count differs from
the dataset length (``limit_val_batches``, a loader that repeats items) uses its statistics for
this run but does not write them to disk, with a warning.

Under DDP the states (``FeatureGaussian``) sum across processes, so any share per process gives
one process's statistics; every rank calls the same collectives in the same order (the decision
to use cached statistics is gathered from all ranks first; when only some found them, the first
that did sends them), and only the file write is rank zero's.

KID (``kid=True``) needs the real features themselves, not only their Gaussian: the callback then
gathers every feature (``callbacks.gather``, dataset order) and caches the real ones in the
statistics file as well; subsets are drawn with ``draw_subsets(seed=kid_seed)``, as torchmetrics'
``KernelInceptionDistance`` after ``torch.manual_seed(kid_seed)``.

Configured in an experiment YAML::

    trainer:
      callbacks:
        - class_path: callbacks.fid.LogFID
          init_args:
            weights: fid_inception     # the manifest key: $LATENTLAB_WEIGHTS/<file>, verified
            dataset: celeba-64-aligned
            kid: true
            kid_subset_size: 1000
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader

from callbacks import keys
from callbacks.base import EvaluationCallback
from callbacks.gather import gather_items, gather_rows
from callbacks.generative.frechet import frechet_distance
from callbacks.generative.gaussian import FeatureGaussian
from callbacks.generative.kid import draw_subsets, kernel_inception_distance
from callbacks.generative.stats_file import (
    RealStats,
    key_text,
    read_stats,
    stats_path,
    write_stats,
)
from callbacks.global_log import log_global
from lightning_modules.components.inception import FIDInceptionV3

__all__ = ["FIDState", "LogFID", "default_cache_dir"]

#: DataLoader settings among a datamodule's hyper-parameters that do not change its images.
LOADER_SETTINGS = frozenset(
    {"batch_size", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor"}
)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/latentlab/fid`` (``~/.cache/latentlab/fid`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "latentlab" / "fid"


class FIDState(nn.Module):
    """One stage's holder: the extractor, the fake and real ``FeatureGaussian``s, the kept
    features (KID), the cache key and the statistics found for it."""

    def __init__(self, extractor: nn.Module, keep_features: bool) -> None:
        super().__init__()
        self.extractor = extractor
        self.fake = FeatureGaussian(extractor.num_features)
        self.real = FeatureGaussian(extractor.num_features)
        self.keep_features = keep_features
        self.fake_features: list[Tensor] = []
        self.real_features: list[Tensor] = []
        self.partial_key: dict[str, Any] = {}
        self.key: dict[str, Any] | None = None
        self.cached: RealStats | None = None

    def add(self, images: Tensor, real: bool) -> None:
        features = self.extractor(images)
        (self.real if real else self.fake).update(features)
        if self.keep_features:
            (self.real_features if real else self.fake_features).append(features.detach())

    def kept(self, real: bool) -> Tensor:
        """This rank's kept features (n, d), in the order seen."""
        parts = self.real_features if real else self.fake_features
        d = self.extractor.num_features
        return torch.cat(parts) if parts else torch.zeros(0, d, device=self.fake.total.device)


class LogFID(EvaluationCallback):
    """Logs ``{stage}/fid`` (and ``{stage}/kid_mean``, ``{stage}/kid_std`` with ``kid=True``).

    Consumes the step outputs ``FAKE`` and ``REAL`` (B, 3, H, W) floats in [0, 1]
    (``callbacks/keys.py``) of every batch of the stage (all processes, all dataloaders); FID is
    ``frechet_distance`` of the two feature Gaussians, on the module's device. ``last[stage]``
    holds the latest values and counts.

    Args:
        weights: torch-fidelity's Inception file (``INCEPTION_FILE`` of
            ``lightning_modules.components.inception``), a path or the manifest key
            ``fid_inception``; None: its copy in the weights folder (``make weights``), else in
            torch's hub cache. Checked against the manifest's sha256.
        resize: ``"tf1"`` (default: torch-fidelity's numbers, torchmetrics with
            ``antialias=False``) or ``"antialias"`` (torchmetrics' default).
        random_weights: A random Inception (tests only).
        download: Fetch the Inception file from its standard address when no copy is found;
            never otherwise.
        extractor: Any module mapping the images to (B, d) features, with attributes
            ``num_features`` (d) and ``fingerprint`` (str, its cache identity), used instead of
            the Inception (as torchmetrics' ``feature=Module``).
        dataset: The real set's name in the cache key; default the datamodule's class and saved
            hyper-parameters (required when there is no datamodule or it saves none).
        cache_dir: Folder of the statistics files; default ``default_cache_dir()``.
        kid: Also log KID (gathers and caches the real features, see the module docstring).
        kid_subsets: Number of KID subsets.
        kid_subset_size: Images per KID subset (at most the real and the generated counts).
        kid_seed: Seed of the KID subsets.
        stages: Stages to evaluate, any of ``"val"`` and ``"test"``.
        every_n_epochs: Evaluate validation after every n-th epoch (and the last).
    """

    required_keys = (keys.FAKE, keys.REAL)

    def __init__(
        self,
        weights: str | None = None,
        resize: str = "tf1",
        random_weights: bool = False,
        download: bool = False,
        extractor: nn.Module | None = None,
        dataset: str | None = None,
        cache_dir: str | None = None,
        kid: bool = False,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        kid_seed: int = 0,
        stages: list[str] | None = None,
        every_n_epochs: int = 1,
    ) -> None:
        super().__init__(stages, every_n_epochs)
        if extractor is None:
            extractor = FIDInceptionV3(
                weights, resize=resize, random_weights=random_weights, download=download
            )
        elif weights is not None or random_weights or download:
            raise ValueError("LogFID: give an extractor or Inception weights, not both")
        if not isinstance(getattr(extractor, "num_features", None), int) or not isinstance(
            getattr(extractor, "fingerprint", None), str
        ):
            raise ValueError(
                "LogFID: the extractor needs attributes num_features (int) and fingerprint (str)"
            )
        if kid and (kid_subsets < 1 or kid_subset_size < 2):
            raise ValueError("LogFID: kid_subsets must be >= 1 and kid_subset_size >= 2")
        self.extractor = extractor.eval()
        self.dataset = dataset
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.kid = kid
        self.kid_subsets, self.kid_subset_size, self.kid_seed = (
            kid_subsets,
            kid_subset_size,
            kid_seed,
        )
        self.memory: dict[str, RealStats] = {}
        self.last: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ the base's three methods
    def make_metrics(self, stage: str) -> FIDState:
        return FIDState(self.extractor, keep_features=self.kid)

    def update(self, metrics: FIDState, outputs, batch, pl_module: LightningModule) -> None:
        fake, real = outputs[keys.FAKE], outputs[keys.REAL]
        resolution = [int(real.shape[-2]), int(real.shape[-1])]
        if metrics.key is None:
            metrics.key = {**metrics.partial_key, "resolution": resolution}
            metrics.cached = self.lookup(metrics.key)
        elif metrics.key["resolution"] != resolution:
            raise ValueError(
                f"LogFID: real images of one stage must share a size, got "
                f"{metrics.key['resolution']} and {resolution}"
            )
        metrics.add(fake, real=False)
        if metrics.cached is None:
            metrics.add(real, real=True)

    def report(self, stage: str, metrics: FIDState, trainer: Trainer, pl_module) -> None:
        views = gather_items([{"key": metrics.key, "hit": metrics.cached is not None}], "rank")
        seen = {key_text(v["key"]) for v in views if v["key"] is not None}
        if not seen:
            rank_zero_warn(f"LogFID: no {stage} batches were evaluated; nothing logged")
            return
        if len(seen) > 1:
            raise ValueError(f"LogFID: the processes saw different real sets {sorted(seen)}")
        key = json.loads(seen.pop())
        holders = [rank for rank, v in enumerate(views) if v["hit"]]
        if not holders:
            real = self.real_from_epoch(metrics, key, trainer)
        elif len(holders) < len(views):  # only some found them (a file written meanwhile)
            box = [None if metrics.cached is None else metrics.cached.to("cpu")]
            dist.broadcast_object_list(box, src=holders[0])
            real = box[0]
        else:
            real = metrics.cached
        self.memory[key_text(key)] = real.to("cpu")
        device = pl_module.device
        real = real.to(device)
        fake_mean, fake_covariance, fake_count = metrics.fake.compute()
        values = {
            f"{stage}/fid": frechet_distance(
                real.mean, real.covariance, fake_mean.to(device), fake_covariance.to(device)
            )
        }
        if self.kid:
            values.update(self.kid_values(stage, real.features, gather_rows(metrics.kept(False))))
        self.last[stage] = {**values, "real_count": real.count, "fake_count": fake_count}
        log_global(pl_module, values)

    # ------------------------------------------------------------------ cache
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self.prepare("val", trainer)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_epoch_start(trainer, pl_module)
        self.prepare("test", trainer)

    def prepare(self, stage: str, trainer: Trainer) -> None:
        """The key of this epoch's real set, but for the resolution (known at the first batch)."""
        metrics = self.metrics.get(stage)
        if metrics is None:
            return
        metrics.partial_key = {
            "dataset": self.dataset_name(trainer),
            "split": stage,
            "count": expected_count(trainer, stage),
            "extractor": self.extractor.fingerprint,
        }

    def dataset_name(self, trainer: Trainer) -> str:
        if self.dataset is not None:
            return self.dataset
        datamodule = trainer.datamodule
        hparams = dict(getattr(datamodule, "hparams", None) or {})
        named = {k: v for k, v in hparams.items() if k not in LOADER_SETTINGS}
        if not named:
            what = "no datamodule" if datamodule is None else type(datamodule).__name__
            raise ValueError(
                f"LogFID: name the real set in its cache key with dataset=<name> "
                f"({what} saves no hyper-parameters that identify its images)"
            )
        cls = type(datamodule)
        return f"{cls.__module__}.{cls.__qualname__}" + json.dumps(
            named, sort_keys=True, default=str
        )

    def lookup(self, key: dict[str, Any]) -> RealStats | None:
        """The statistics of ``key`` held in memory or in the cache folder, else None."""
        held = self.memory.get(key_text(key))
        if held is not None:
            return held
        path = stats_path(self.cache_dir, key)
        if not path.is_file():
            return None
        try:
            stats = read_stats(path, key, self.extractor.num_features)
        except ValueError as error:
            rank_zero_warn(f"LogFID: not using {path}: {error}; recomputing the statistics")
            return None
        if self.kid and stats.features is None:
            return None  # written without the features KID needs: recomputed and rewritten
        return stats

    def real_from_epoch(self, metrics: FIDState, key: dict[str, Any], trainer) -> RealStats:
        """The real set's statistics from this epoch's features (every rank), written to the
        cache by rank zero when the epoch saw the whole set."""
        mean, covariance, count = metrics.real.compute()  # synced across processes
        features = gather_rows(metrics.kept(True)).cpu() if self.kid else None
        stats = RealStats(mean.cpu(), covariance.cpu(), count, features)
        path = stats_path(self.cache_dir, key)
        if count != key["count"]:
            rank_zero_warn(
                f"LogFID: {count} real {key['split']} images were evaluated, the dataset holds "
                f"{key['count']}; their statistics serve this run but are not written to {path}"
            )
        elif trainer.is_global_zero:
            try:
                write_stats(path, key, stats)
            except OSError as error:
                rank_zero_warn(f"LogFID: could not write {path}: {error}")
        return stats

    def kid_values(self, stage: str, real: Tensor, fake: Tensor) -> dict[str, float]:
        size = self.kid_subset_size
        if min(len(real), len(fake)) < size:
            raise ValueError(
                f"LogFID: kid_subset_size {size} exceeds the {stage} real ({len(real)}) or "
                f"generated ({len(fake)}) image count; lower kid_subset_size"
            )
        subsets = draw_subsets(len(real), len(fake), self.kid_subsets, size, self.kid_seed)
        mean, std = kernel_inception_distance(real.to(fake.device), fake, subsets)
        return {f"{stage}/kid_mean": mean, f"{stage}/kid_std": std}


def expected_count(trainer: Trainer, stage: str) -> int:
    """The number of items of the stage's dataset(s), before any sharding."""
    loaders = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
    if isinstance(loaders, DataLoader):
        loaders = [loaders]
    elif isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    total = 0
    for loader in loaders or []:
        dataset = getattr(loader, "dataset", None)
        try:
            total += len(dataset)
        except TypeError as error:
            raise ValueError(
                f"LogFID keys its real-set cache by the number of images, but the {stage} "
                f"dataset {type(dataset).__name__} has no length"
            ) from error
    return total
