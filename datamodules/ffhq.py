"""FFHQ (NVlabs release, 70,000 unlabelled faces) as a LightningDataModule.

Reads any layout ``datamodules.formats.ffhq.list_ffhq_images`` accepts. With ``cache_res`` set,
images come from the one-time resized cache ``<root>/cache_<res>/`` (``make data DATASET=ffhq
RES=<res>``), so training never decodes 1024 px PNGs; without it, the source images are decoded and
resized on the fly.

FFHQ has no official split: ``val_fraction`` of the images (seeded) is held out for validation and
the rest trains; test and predict serve every image (e.g. to label all of FFHQ with a CelebA
attribute classifier, or to compute FID against all of it).

Batches: ``image`` float (B, 3, S, S) normalised, ``image_id`` list of 5-digit ids (``"00042"``),
``index`` long (B,).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from datamodules.formats.errors import DatasetNotFoundError
from datamodules.formats.ffhq import MANIFEST_FILE, list_ffhq_images, read_cache_manifest
from datamodules.formats.listed_files import check_listed_files
from datamodules.images import NORMALIZATIONS, celeba_framing, read_rgb, square_transform
from datamodules.paths import make_data_command, resolve_root
from datamodules.split_loaders import SplitDataModule


class FFHQImages(Dataset):
    """FFHQ images as batch-contract dicts.

    Args:
        images: ``(index, path)`` pairs.
        transform: uint8 (3, H, W) -> float (3, S, S).
    """

    def __init__(self, images: list[tuple[int, Path]], transform) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        index, path = self.images[i]
        return {
            "image": self.transform(read_rgb(path)),
            "image_id": f"{index:05d}",
            "index": torch.tensor(index, dtype=torch.long),
        }


class FFHQDataModule(SplitDataModule):
    """FFHQ faces from the released layout, its resized cache, or its synthetic twin.

    Args:
        root: FFHQ folder (holding ``images1024x1024/``); None resolves ``$LATENTLAB_DATA/ffhq``
            else ``data/ffhq``.
        image_size: Side of the square network input (direct resize, bilinear, antialiased).
        framing: ``"ffhq"`` (the images as they are) or ``"celeba"`` (each image first placed in
            CelebA's aligned 178 x 218 frame, where FFHQ's alignment puts it, edges repeated: for
            models trained on uncropped CelebA images, e.g. attribute label transfer).
        cache_res: Read ``<root>/cache_<cache_res>/`` (built by ``make data DATASET=ffhq
            RES=<cache_res>``); None decodes the source images.
        normalize: ``"imagenet"`` mean/std or ``"none"`` ([0, 1] images).
        batch_size: Images per batch.
        num_workers: DataLoader worker processes.
        val_fraction: Seeded fraction of the images held out for validation.
        seed: Seed of the validation split (and of the synthetic twin).
        synthetic: When set (``"tiny"``, ``"small"``, ``"default"``) and ``root`` holds no image,
            ``prepare_data`` writes the synthetic twin into ``root``'s parent (``root`` must then
            end in ``ffhq``).
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 224,
        framing: Literal["ffhq", "celeba"] = "ffhq",
        cache_res: int | None = None,
        normalize: Literal["imagenet", "none"] = "imagenet",
        batch_size: int = 64,
        num_workers: int = 2,
        val_fraction: float = 0.05,
        seed: int = 0,
        synthetic: Literal["tiny", "small", "default"] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"normalize must be one of {sorted(NORMALIZATIONS)}, got {normalize!r}"
            )
        if framing not in ("ffhq", "celeba"):
            raise ValueError(f"framing must be 'ffhq' or 'celeba', got {framing!r}")
        if cache_res is not None and cache_res <= 0:
            raise ValueError(f"cache_res must be positive, got {cache_res}")
        self.splits: dict[str, FFHQImages] = {}

    @property
    def root(self) -> Path:
        """The resolved data root."""
        return resolve_root(self.hparams.root, "ffhq")

    def prepare_data(self) -> None:
        """With ``synthetic`` set: write the twin unless an up-to-date one is at ``root``."""
        preset, root = self.hparams.synthetic, self.root
        if preset is None:
            return
        from datamodules.synthetic.faces import ensure_twin

        ensure_twin(root, "ffhq", preset, self.hparams.seed, present=root.exists())

    def setup(self, stage: str | None = None) -> None:
        """List the images (from the cache when ``cache_res`` is set), refuse a missing or empty
        file, and split off validation."""
        if self.splits:
            return
        images = self._list_images()
        check_listed_files(((None, path) for _, path in images), listed_in=None)
        hp = self.hparams
        framing = celeba_framing if hp.framing == "celeba" else None
        transform = square_transform(hp.image_size, hp.normalize, framing=framing)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(hp.seed))
        n_val = max(1, round(hp.val_fraction * len(images))) if hp.val_fraction > 0 else 0
        val = sorted(order[:n_val].tolist())
        train = sorted(order[n_val:].tolist())
        self.splits["train"] = FFHQImages([images[i] for i in train], transform)
        self.splits["val"] = FFHQImages([images[i] for i in val], transform)
        self.splits["test"] = FFHQImages(images, transform)

    def _list_images(self) -> list[tuple[int, Path]]:
        res = self.hparams.cache_res
        if res is None:
            return list_ffhq_images(self.root)
        cache = self.root / f"cache_{res}"
        manifest = read_cache_manifest(cache)
        build = make_data_command("ffhq", self.root, RES=res)
        if manifest is None or manifest.get("res") != res:
            how = (
                f"The resized cache is missing or unfinished. Build it once with `{build}`, or "
                "run with `--data.init_args.cache_res=null` to decode full-size images (slow)."
            )
            raise DatasetNotFoundError("FFHQ cache", self.root, cache / MANIFEST_FILE, how)
        images = list_ffhq_images(cache)
        if len(images) != manifest["count"]:
            raise FileNotFoundError(
                f"FFHQ cache {cache} holds {len(images)} images but its manifest records "
                f"{manifest['count']}; rebuild it with `{build}`"
            )
        return images
