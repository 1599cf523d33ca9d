"""CUB-200-2011 for weakly supervised object localization, in the wsolevaluation protocol.

Splits (Choe et al., CVPR 2020; thesis Sec. 5.4.1): ``train`` = CUB train (class labels only,
5,994 images) for weak supervision; ``val`` = CUBV2 (1,000 box-annotated images) for model
selection and CAM thresholds; ``test`` = CUB test (5,794) for final numbers only. Where CUBV2 is
absent, ``val_split: train_holdout`` holds out ``holdout_per_class`` train images per class
(seeded) as the box-annotated val split and removes them from training.

Layout under ``root`` (default ``$LATENTLAB_DATA/cub``): ``CUB_200_2011/`` (images and the five
tables), ``CUBV2/images/`` and ``metadata/CUB/{train,val,test}/`` (wsolevaluation metadata; made
from the CUB tables by ``make data DATASET=cub`` when absent). The synthetic birds
(``datamodules.synthetic.birds``) write the same layout, plus ``masks/`` for PxAP.

Batch: ``image`` (B, 3, S, S) ImageNet-normalized, ``label`` (B,), ``image_id`` list[str],
``boxes`` (B, G, 4) inclusive (x0, y0, x1, y1) at S x S (eval splits; G pads with the first box),
``mask`` (B, S, S) long in {0, 1} when ``with_masks`` and masks exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from datamodules.formats.cub import (
    WSOLSplit,
    check_cub_images,
    check_metadata_agrees,
    cub_to_wsol_metadata,
    read_cub,
    read_wsol_metadata,
    resize_box,
    wsol_splits,
)
from datamodules.formats.errors import DatasetNotFoundError
from datamodules.formats.listed_files import check_listed_files
from datamodules.images import NORMALIZATIONS, RandomIntensity, read_rgb
from datamodules.paths import make_data_command, resolve_root
from datamodules.samplers import ClassSetSampler, check_enough_classes
from datamodules.sharding import eval_sampler


def how_to_get(root: Path) -> str:
    """What to run when CUB-200-2011 is not under ``root``: commands that work as written."""
    return (
        f"Download and check it with `{make_data_command('cub', root, DOWNLOAD=1)}` "
        "(CUB_200_2011.tgz from the Caltech data site, md5-checked; writes the wsolevaluation "
        "metadata),\nor place CUB_200_2011/ from https://data.caltech.edu/records/65de6-vp158 "
        f"(and metadata/CUB/ + CUBV2/ from https://github.com/clovaai/wsolevaluation) under {root} "
        f"and check them with `{make_data_command('cub', root)}`."
    )


CUBV2_HINT = (
    "CUBV2 (the box-annotated val split) exists only in wsolevaluation's release: place "
    "metadata/CUB/val/ and CUBV2/ from https://github.com/clovaai/wsolevaluation under the root, "
    "or hold out train images as val with `--data.init_args.val_split=train_holdout`."
)


class WSOLImages(Dataset):
    """Images of one metadata split with labels, scaled GT boxes and optional masks."""

    def __init__(
        self, image_dir: Path, split: WSOLSplit, transform, size: int, mask_dir: Path | None
    ) -> None:
        self.image_dir, self.split, self.transform = image_dir, split, transform
        self.size, self.mask_dir = size, mask_dir
        self.max_boxes = max((len(b) for b in split.boxes.values()), default=0)

    def __len__(self) -> int:
        return len(self.split.image_ids)

    def __getitem__(self, index: int) -> dict:
        path = self.split.image_ids[index]
        image = read_rgb(self.image_dir / path)
        item = {"image": self.transform(image), "label": self.split.labels[path], "image_id": path}
        if self.max_boxes:
            size = self.split.sizes[path]
            boxes = [resize_box(b, size, (self.size, self.size)) for b in self.split.boxes[path]]
            boxes += [boxes[0]] * (self.max_boxes - len(boxes))
            item["boxes"] = torch.tensor(boxes, dtype=torch.long)
        if self.mask_dir is not None:
            mask = read_rgb(self.mask_dir / path)[:1].float()
            mask = v2.functional.resize(mask, [self.size, self.size], v2.InterpolationMode.NEAREST)
            item["mask"] = (mask[0] > 127.5).long()  # [WSOL]: nearest resize, then > 0.5
        return item


class CUBDataModule(LightningDataModule):
    """CUB-200-2011 (or its synthetic twin) with N x m class-set training batches.

    Under DDP on W processes each process trains on its own N classes of a W*N class set
    (``datamodules.samplers.ClassSetSampler``), and val/test are split across the processes, each
    image evaluated once (``datamodules.sharding``).

    Args:
        root: Folder holding ``CUB_200_2011/``, ``CUBV2/`` and ``metadata/CUB/``.
        image_size: Crop / eval side S (224 in the paper).
        resize_size: Train resize before the random crop (256 in [WSOL]).
        classes_per_batch: N per process (12; ResNet-50: 10); W*N may not exceed the classes.
        samples_per_class: m (5).
        eval_batch_size: Batch size of val/test.
        num_workers: DataLoader workers.
        vertical_flip: Also flip vertically in training (the thesis author's code; off in [WSOL]).
        val_split: ``metadata`` (CUBV2) or ``train_holdout``.
        holdout_per_class: Images per class held out when ``val_split`` is ``train_holdout``.
        with_masks: Also load ``masks/`` (synthetic twin) for PxAP.
        intensity: Training-only ``(low, high)``: every image's RGB is multiplied by U(low, high)
            (the thesis's intensity-augmentation ablation uses (0.25, 1.0)); None = off.
        seed: Seed of the sampler (per epoch: seed + epoch) and of the holdout.
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 224,
        resize_size: int = 256,
        classes_per_batch: int = 12,
        samples_per_class: int = 5,
        eval_batch_size: int = 64,
        num_workers: int = 4,
        vertical_flip: bool = False,
        val_split: Literal["metadata", "train_holdout"] = "metadata",
        holdout_per_class: int = 5,
        with_masks: bool = False,
        intensity: tuple[float, float] | None = None,
        seed: int = 610,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # built (and its range checked) here, not at the first training batch
        self._intensity = None if intensity is None else RandomIntensity(*intensity)
        self.splits: dict[str, WSOLImages] = {}
        self._num_classes: int | None = None

    @property
    def samples_per_class(self) -> int:
        """m: images of each class in a training batch, in consecutive rows."""
        return self.hparams.samples_per_class

    @property
    def image_mean(self) -> tuple[float, float, float]:
        """Per-channel mean subtracted from [0, 1] images (ImageNet's; panels use it to undo it)."""
        return NORMALIZATIONS["imagenet"][0]

    @property
    def image_std(self) -> tuple[float, float, float]:
        """Per-channel std dividing [0, 1] images (ImageNet's)."""
        return NORMALIZATIONS["imagenet"][1]

    @property
    def num_classes(self) -> int:
        """Number of classes (max label + 1 of the training split), known after ``setup``."""
        if self._num_classes is None:
            self.setup("fit")
        return self._num_classes

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self._read_splits()
        if stage == "fit":  # W * N classes per step on W processes: fail here, not at the loader
            train = self.splits["train"].split
            check_enough_classes(self.hparams.classes_per_batch, len(set(train.labels.values())))

    def _read_splits(self) -> None:
        root = resolve_root(self.hparams.root, "cub")
        splits = read_training_metadata(root, with_val=self.hparams.val_split == "metadata")
        train, test = splits["train"], splits["test"]
        if self.hparams.val_split == "metadata":
            val, val_dir = splits["val"], root / "CUBV2"
        else:
            train, val = _holdout(train, self.hparams.holdout_per_class, self.hparams.seed)
            val_dir = root / "CUB_200_2011"
        self._num_classes = max(train.labels.values()) + 1
        train_tf, eval_tf = self._transforms()
        size = self.hparams.image_size
        cub = root / "CUB_200_2011"
        self.splits = {
            "train": WSOLImages(cub / "images", _without_boxes(train), train_tf, size, None),
            "val": WSOLImages(val_dir / "images", val, eval_tf, size, self._masks(val_dir)),
            "test": WSOLImages(cub / "images", test, eval_tf, size, self._masks(cub)),
        }

    def _masks(self, folder: Path) -> Path | None:
        return folder / "masks" if self.hparams.with_masks else None

    def _transforms(self):
        mean, std = self.image_mean, self.image_std
        size, resize = self.hparams.image_size, self.hparams.resize_size
        to_float, normalize = v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)
        augment = [v2.RandomHorizontalFlip()]
        if self.hparams.vertical_flip:
            augment.append(v2.RandomVerticalFlip())
        augment.append(to_float)
        if self._intensity is not None:
            augment.append(self._intensity)
        train = v2.Compose([v2.Resize((resize, resize)), v2.RandomCrop(size), *augment, normalize])
        return train, v2.Compose([v2.Resize((size, size)), to_float, normalize])

    def train_dataloader(self) -> DataLoader:
        dataset = self.splits["train"]
        labels = [dataset.split.labels[p] for p in dataset.split.image_ids]
        sampler = ClassSetSampler(
            labels,
            self.hparams.classes_per_batch,
            self.hparams.samples_per_class,
            seed=self.hparams.seed,
        )
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=sampler.batch_size,
            drop_last=True,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self.splits[split]
        return DataLoader(
            dataset,
            batch_size=self.hparams.eval_batch_size,
            sampler=eval_sampler(dataset, split),
            num_workers=self.hparams.num_workers,
            pin_memory=torch.cuda.is_available(),
        )


#: Folder (under the root) holding the images of each metadata split.
IMAGE_FOLDERS = {"train": "CUB_200_2011", "val": "CUBV2", "test": "CUB_200_2011"}


def read_training_metadata(root: Path, with_val: bool) -> dict[str, WSOLSplit]:
    """Read and check what training reads: ``metadata/CUB/{train,test}`` (and ``val``).

    The one check of the metadata: ``CUBDataModule.setup`` and ``make data DATASET=cub`` both call
    it. Each split is read strictly (``read_wsol_metadata``) and every image it lists must exist
    and not be empty (one stat per file).

    Raises:
        DatasetNotFoundError: The image folder or a metadata split is absent.
        FormatError: A malformed or inconsistent metadata file, or a listed image that is missing
            or empty, naming the file and line.
    """
    metadata = root / "metadata" / "CUB"
    names = ("train", "test", "val") if with_val else ("train", "test")
    for needed in (root / "CUB_200_2011" / "images", metadata / "train" / "image_ids.txt"):
        if not needed.exists():
            raise DatasetNotFoundError("CUB-200-2011", root, needed, how_to_get(root))
    if with_val and not (metadata / "val" / "image_ids.txt").is_file():
        raise DatasetNotFoundError("CUBV2", root, metadata / "val", CUBV2_HINT)
    splits = {}
    for name in names:
        split = read_wsol_metadata(metadata / name)
        image_dir = root / IMAGE_FOLDERS[name] / "images"
        files = ((line, image_dir / path) for line, path in enumerate(split.image_ids, 1))
        check_listed_files(files, metadata / name / "image_ids.txt")
        splits[name] = split
    return splits


def _without_boxes(split: WSOLSplit) -> WSOLSplit:
    """Training sees class labels only (weak supervision)."""
    return WSOLSplit(split.image_ids, split.labels, split.sizes, {})


def _holdout(split: WSOLSplit, per_class: int, seed: int) -> tuple[WSOLSplit, WSOLSplit]:
    """Move ``per_class`` seeded images per class from ``split`` into a box-annotated val split."""
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[str]] = {}
    for path in split.image_ids:
        by_class.setdefault(split.labels[path], []).append(path)
    held = set()
    for label in sorted(by_class):
        paths = by_class[label]
        order = torch.randperm(len(paths), generator=generator)[:per_class].tolist()
        held.update(paths[i] for i in order)
    keep = [p for p in split.image_ids if p not in held]
    val = [p for p in split.image_ids if p in held]

    def subset(ids):
        return WSOLSplit(
            ids,
            {p: split.labels[p] for p in ids},
            {p: split.sizes[p] for p in ids},
            {p: split.boxes[p] for p in ids if p in split.boxes},
        )

    return subset(keep), subset(val)


CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CUB_MD5 = "97eceeb196236b17998738112f37df78"


def prepare_cub(root: str | Path | None = None, download: bool = False) -> Path:
    """``make data DATASET=cub``: fetch (md5-checked), verify the tables and what training reads.

    Downloads ``CUB_200_2011.tgz`` into ``root`` when ``download`` and the folder is absent (a
    clear error when the network is unreachable), and writes ``metadata/CUB/{train,test}`` from the
    CUB tables when absent. Then, whether or not the metadata was there: checks it with the check
    ``CUBDataModule.setup`` runs (``read_training_metadata``; ``val`` too when present), reads and
    cross-checks the five CUB tables and every image they list (present, not empty, header, box
    inside), and checks that the metadata's train and test splits agree with the tables (images,
    labels, image sizes).
    """
    from torchvision.datasets.utils import download_and_extract_archive

    root = resolve_root(root, "cub")
    cub = root / "CUB_200_2011"
    if not cub.exists():
        if not download:
            raise DatasetNotFoundError("CUB-200-2011", root, cub, how_to_get(root))
        try:
            download_and_extract_archive(CUB_URL, str(root), md5=CUB_MD5)
        except Exception as error:  # network errors come in many types
            raise DatasetNotFoundError(
                "CUB-200-2011", root, cub, f"download failed ({error}). {how_to_get(root)}"
            ) from error
    metadata = root / "metadata" / "CUB"
    if not (metadata / "train" / "image_ids.txt").is_file():
        cub_to_wsol_metadata(cub, metadata)
    splits = read_training_metadata(root, with_val=(metadata / "val").exists())
    table = read_cub(cub)
    expected = wsol_splits(table, check_cub_images(cub, table))
    for name, split in expected.items():
        check_metadata_agrees(metadata / name, splits[name], split)
    return root
