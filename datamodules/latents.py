"""ISTRC's cached latents (stage 3's files) as a LightningDataModule for the mapping F and the
latent attribute classifiers C_a (stages 4 and 5 of the spec ``istrc``).

Stage 3 (``lightning_modules.istrc.latent_cache``) writes, per CelebA split, ``latents_<split>.pt``
into its run folder: ``{"z" float32 (N, D) unit rows (the frozen encoder E), "h" float32 (N, Nh)
(the BEGAN bottleneck D_enc(x)), "attributes" uint8 (N, L) in {0, 1}, "identity" int64 (N,),
"image_id" list[str], "attribute_names" list[str]}`` in dataset order. This module reads the
three splits and serves items ``{"z", "h", "attributes" float (L,), "identity", "image_id"}``:
shuffled training batches, evaluation batches in file order, each item once over the DDP ranks
(``datamodules.sharding``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.split_loaders import SplitDataModule

__all__ = ["LATENTS_PREFIX", "LatentDataModule", "Latents", "latents_file", "load_latents"]

LATENTS_PREFIX = "latents"
SPLITS = ("train", "val", "test")
#: Tensors every latents file holds, with their rank.
TENSOR_KEYS = {"z": 2, "h": 2, "attributes": 2, "identity": 1}
#: How the files are made: in the hint of every missing-file error.
HOW_TO_WRITE = (
    "The files are ISTRC's stage 3: predict the train, val and test splits with "
    "lightning_modules.istrc.latent_cache.LatentCache (the frozen encoder E and BEGAN D_enc "
    "loaded from their runs) and the callback lightning_modules.istrc.latent_cache.WriteLatents, "
    "e.g. python -m experiments predict --config experiments/_base.yaml --config "
    "<the latents YAML> --data.init_args.predict_splits=[train,val,test]; then point "
    "--data.init_args.path at that run's folder (or at runs/<its name>, for its newest run)."
)


def latents_file(folder: str | Path, split: str) -> Path:
    """``<folder>/latents_<split>.pt``."""
    return Path(folder) / f"{LATENTS_PREFIX}_{split}.pt"


def load_latents(path: str | Path) -> dict[str, Any]:
    """Read and check one ``latents_<split>.pt`` (a ``FormatError`` names a malformed file)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    missing = sorted({*TENSOR_KEYS, "image_id", "attribute_names"} - set(payload))
    if missing:
        raise FormatError(path, f"not an ISTRC latents file: it lacks {missing}")
    count = len(payload["image_id"])
    for name, ndim in TENSOR_KEYS.items():
        value = payload[name]
        if not isinstance(value, Tensor) or value.ndim != ndim or value.shape[0] != count:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise FormatError(path, f"{name!r} is {shape}, not {ndim}-d with {count} rows")
    if payload["attributes"].shape[1] != len(payload["attribute_names"]):
        raise FormatError(path, "the attributes' columns do not match attribute_names")
    return payload


class Latents(Dataset):
    """One split of the cache: ``dataset[i]`` is ``{"z", "h", "attributes", "identity",
    "image_id"}`` of item i (attributes as float (L,))."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.z, self.h = payload["z"].float(), payload["h"].float()
        self.attributes = payload["attributes"].float()
        self.identity = payload["identity"].long()
        self.image_id = list(payload["image_id"])

    def __len__(self) -> int:
        return len(self.image_id)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "z": self.z[i],
            "h": self.h[i],
            "attributes": self.attributes[i],
            "identity": self.identity[i],
            "image_id": self.image_id[i],
        }


class LatentDataModule(SplitDataModule):
    """The (z, h, labels) cache of ISTRC's stage 3, split as it was written (train, val, test).

    Facts for the models' setup checks (after ``setup``): ``latent_dim`` (D of z), ``code_size``
    (Nh of h), ``attribute_names`` (the kept columns). Prediction serves the test split.

    Args:
        path: The folder holding ``latents_{train,val,test}.pt`` (the stage-3 run folder), or a
            run-name folder ``runs/<name>`` whose newest ``<timestamp>`` run holding them is read.
        attributes: Attribute columns to keep, in this order (the classifiers' list); None keeps
            every column of the files.
        batch_size: Items per batch (256, the spec's F and C_a batch).
        num_workers: DataLoader worker processes (0: the items are in memory).
        shuffle_labels: A control: the training split's attribute rows are permuted (seeded by
            ``shuffle_seed``), so that labels no longer belong to their latents; val and test
            keep theirs. A classifier trained on them must stay at chance.
        shuffle_seed: Seed of that permutation.
    """

    def __init__(
        self,
        path: str,
        attributes: list[str] | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        shuffle_labels: bool = False,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if attributes is not None and len(set(attributes)) != len(attributes):
            raise ValueError(f"attributes repeat a name: {attributes}")
        self.splits: dict[str, Latents] = {}

    @property
    def folder(self) -> Path:
        """The folder the files are read from (``path``, or its newest run holding them)."""
        return _latents_folder(Path(self.hparams.path).expanduser())

    @property
    def attribute_names(self) -> list[str]:
        """The kept attribute columns (needs ``setup``)."""
        return list(self._loaded("attribute_names"))

    @property
    def latent_dim(self) -> int:
        """D, the size of z (needs ``setup``)."""
        return int(self._loaded("latent_dim"))

    @property
    def code_size(self) -> int:
        """Nh, the size of h (needs ``setup``)."""
        return int(self._loaded("code_size"))

    def setup(self, stage: str | None = None) -> None:
        """Read the three files (each missing one is named with how to write it)."""
        if self.splits:
            return
        folder = self.folder
        payloads = {split: load_latents(_existing(folder, split)) for split in SPLITS}
        self._facts = _facts(payloads, self.hparams.attributes, folder)
        columns = self._facts.pop("columns")
        for split, payload in payloads.items():
            payload["attributes"] = payload["attributes"][:, columns]
            if split == "train" and self.hparams.shuffle_labels:
                generator = torch.Generator().manual_seed(self.hparams.shuffle_seed)
                order = torch.randperm(len(payload["attributes"]), generator=generator)
                payload["attributes"] = payload["attributes"][order]
            self.splits[split] = Latents(payload)

    def _loaded(self, name: str) -> Any:
        facts = getattr(self, "_facts", None)
        if facts is None:
            raise RuntimeError(f"LatentDataModule.{name} needs setup() first (it reads the files)")
        return facts[name]


def _latents_folder(path: Path) -> Path:
    """``path`` when it holds a latents file, else its newest run subfolder that holds them."""
    if latents_file(path, "train").is_file() or not path.is_dir():
        return path
    runs = sorted(p for p in path.iterdir() if latents_file(p, "train").is_file())
    return runs[-1] if runs else path


def _existing(folder: Path, split: str) -> Path:
    path = latents_file(folder, split)
    if not path.is_file():
        raise DatasetNotFoundError("ISTRC latents", folder, path, HOW_TO_WRITE)
    return path


def _facts(
    payloads: dict[str, dict[str, Any]], keep: list[str] | None, folder: Path
) -> dict[str, Any]:
    """D, Nh and the kept names (with their columns), the same in every split's file."""
    first = payloads[SPLITS[0]]
    names = list(first["attribute_names"])
    for split, payload in payloads.items():
        found = (payload["z"].shape[1], payload["h"].shape[1], list(payload["attribute_names"]))
        if found != (first["z"].shape[1], first["h"].shape[1], names):
            raise FormatError(
                latents_file(folder, split),
                f"z width, h width or attribute names differ from {latents_file(folder, 'train')}",
            )
    keep = names if keep is None else list(keep)
    unknown = [n for n in keep if n not in names]
    if unknown:
        raise ValueError(
            f"--data.init_args.attributes names {unknown}, which the latents files lack "
            f"(they hold {names})"
        )
    return {
        "latent_dim": first["z"].shape[1],
        "code_size": first["h"].shape[1],
        "attribute_names": keep,
        "columns": [names.index(n) for n in keep],
    }
