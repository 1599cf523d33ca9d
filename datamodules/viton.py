"""VITON (or its twin) for unpaired clothing translation (UST, thesis Ch. 4; spec section 2).

Reads the CP-VTON or VITON-HD layout (``datamodules.formats.viton``) from ``root`` (default
``$LATENTLAB_DATA/viton``), by default the cleaned pair lists written by ``make data
DATASET=viton`` (``datamodules.viton_cleaning``). Setup checks every pair it serves: files
present, sizes, parse labels, both clothing masks non-empty, each error naming the pairs file and
line.

Training is unpaired, provably: a batch row is ``persons[i] | items[j]`` with ``i`` and ``j`` from
two independent shuffled streams (``UnpairedSampler``: each stream its own permutations from its
own seed), so which item a person wears never reaches the model. With ``disjoint_items`` the
training items are split in two seeded halves: persons come from the pairs of one half, catalog
items from the other, so no item is seen on a person and on its own. Validation and test serve
matched pairs (person i with its item i), for metrics only; the validation split is a seeded
``val_fraction`` of the training pairs (removed from training), or the test split when 0. Under
DDP each evaluation item is served once (``datamodules.sharding``) and each rank trains on its own
positions of the two streams.

Batch keys (images in [-1, 1], masks in {0, 1}):

- ``image_a`` (B, 3, H, W) the person I_A; ``mask_a`` (B, 1, H, W) m_A = parse in {5, 6, 7};
  ``context_a`` = I_A * (1 - m_A) (0 fill); ``masked_a`` = I_A * m_A + (1 - m_A) (white fill);
  ``box_a`` (B, 4) float bbox(m_A), inclusive (x0, y0, x1, y1) (``torchvision.ops.masks_to_boxes``);
  ``name_a`` the person's file, ``item_a`` the item it wears (its pair's cloth file);
  ``pose_a`` (B, K, 3) OpenPose x, y, confidence when ``with_pose``;
- ``image_b`` (B, 3, H, W) the catalog item I_B; ``mask_b`` (B, 1, H, W) m_B (cloth-mask > 127);
  ``name_b`` = ``item_b`` its file.
- Cross pairs (the twin's ``test_cross_pairs.txt``, ``cross_dataloader()``, or the test loader's
  second loader with ``test_cross``): person i and item j != i as above, plus ``target`` (B, 3,
  H, W) the true try-on (person i wearing item j) and ``target_mask`` (B, 1, H, W) its clothing
  mask. Only pairs whose person and item are both in the (clean) test split are served.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from datamodules.formats.errors import DatasetNotFoundError, SettingError
from datamodules.formats.listed_files import check_listed_files
from datamodules.formats.viton import (
    CROSS_PAIRS,
    LAYOUTS,
    Layout,
    Pair,
    check_pair_content,
    check_pair_files,
    cloth_files,
    clothing_mask,
    cross_files,
    detect_layout,
    missing_dataset,
    native_size,
    pairs_file,
    person_files,
    read_cloth_mask,
    read_pairs,
    read_parse,
    read_pose,
)
from datamodules.images import read_rgb
from datamodules.paths import make_data_command, resolve_root
from datamodules.sharding import replicas_and_rank
from datamodules.split_loaders import SplitDataModule


def _image(path: Path, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 RGB file -> float (3, H, W) in [-1, 1], resized (antialiased) to ``size``."""
    image = read_rgb(path)
    if size is not None and tuple(image.shape[1:]) != tuple(size):
        image = v2.functional.resize(image, list(size), antialias=True)
    return image.float() / 127.5 - 1


def _mask(mask: np.ndarray, size: tuple[int, int] | None) -> torch.Tensor:
    """bool (H, W) -> float (1, H, W) in {0, 1}, nearest-resized to ``size``."""
    out = torch.from_numpy(mask).float()[None]
    if size is not None and tuple(out.shape[1:]) != tuple(size):
        out = v2.functional.resize(out, list(size), v2.InterpolationMode.NEAREST)
    return out


def person_item(image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The derived A quantities: context C_A, masked item view I_A^m and bbox(m_A)."""
    return {
        "context_a": image * (1 - mask),
        "masked_a": image * mask + (1 - mask),
        "box_a": masks_to_boxes(mask.bool())[0],
    }


class VitonPersons(Dataset):
    """Domain A of one split: the persons of ``pairs``."""

    def __init__(
        self,
        root: Path,
        split: str,
        layout: Layout,
        pairs: list[Pair],
        size: tuple[int, int] | None = None,
        with_pose: bool = False,
    ) -> None:
        self.root, self.split, self.layout, self.pairs = root, split, layout, pairs
        self.size, self.with_pose = size, with_pose

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        pair = self.pairs[i]
        folder = self.root / self.split
        image = _image(folder / "image" / pair.person, self.size)
        stem = Path(pair.person).stem
        mask = _mask(
            clothing_mask(read_parse(folder / self.layout.parse_dir / f"{stem}.png")), self.size
        )
        item = {
            "image_a": image,
            "mask_a": mask,
            **person_item(image, mask),
            "name_a": pair.person,
            "item_a": pair.cloth,
        }
        if self.with_pose:
            path = folder / self.layout.pose_dir / f"{stem}_keypoints.json"
            pose = read_pose(path, self.layout.pose_key)
            item["pose_a"] = torch.zeros(0, 3) if pose is None else torch.from_numpy(pose)
        return item


class VitonItems(Dataset):
    """Domain B of one split: the catalog items (cloth + cloth-mask) of ``pairs``."""

    def __init__(
        self, root: Path, split: str, pairs: list[Pair], size: tuple[int, int] | None = None
    ) -> None:
        self.root, self.split, self.pairs, self.size = root, split, pairs, size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, j: int) -> dict:
        cloth = self.pairs[j].cloth
        files = cloth_files(self.root, self.split, cloth)
        return {
            "image_b": _image(files["cloth"], self.size),
            "mask_b": _mask(read_cloth_mask(files["mask"]), self.size),
            "name_b": cloth,
            "item_b": cloth,
        }


class MatchedPairs(Dataset):
    """Person i with its own item i (validation and test metrics)."""

    def __init__(self, persons: VitonPersons, items: VitonItems) -> None:
        self.persons, self.items = persons, items

    def __len__(self) -> int:
        return len(self.persons)

    def __getitem__(self, i: int) -> dict:
        return {**self.persons[i], **self.items[i]}


class UnpairedStreams(Dataset):
    """Training rows ``persons[i] | items[j]`` for index pairs ``(i, j)`` of ``UnpairedSampler``."""

    def __init__(self, persons: VitonPersons, items: VitonItems) -> None:
        self.persons, self.items = persons, items

    def __len__(self) -> int:
        return max(len(self.persons), len(self.items))

    def __getitem__(self, index: tuple[int, int]) -> dict:
        i, j = index
        return {**self.persons[i], **self.items[j]}


class CrossPairs(Dataset):
    """The twin's cross pairs: person i, item j != i, and the true try-on of j onto i."""

    def __init__(
        self, persons: VitonPersons, items: VitonItems, root: Path, worn: dict[str, str]
    ) -> None:
        self.persons, self.items, self.root, self.worn = persons, items, root, worn

    def __len__(self) -> int:
        return len(self.persons)

    def __getitem__(self, k: int) -> dict:
        files = cross_files(
            self.root, Pair(self.persons.pairs[k].person, self.items.pairs[k].cloth, 0, Path())
        )
        size = self.persons.size
        target_mask = _mask(clothing_mask(read_parse(files["parse"])), size)
        person = self.persons[k]
        person["item_a"] = self.worn[person["name_a"]]  # the item person k wears in its photo
        return {
            **person,
            **self.items[k],
            "target": _image(files["image"], size),
            "target_mask": target_mask,
        }


def stream_seed(seed: int, stream: int, epoch: int) -> int:
    """The seed of one stream's permutations in one epoch (independent per stream)."""
    return int(np.random.SeedSequence([seed, stream, epoch]).generate_state(1)[0])


class UnpairedSampler(DistributedSampler):
    """Index pairs ``(i, j)``: persons and items from two independent shuffled streams.

    Per epoch e, the person stream is back-to-back ``randperm(num_persons)`` drawn from
    ``stream_seed(seed, 0, e)`` and the item stream back-to-back ``randperm(num_items)`` from
    ``stream_seed(seed, 1, e)``; neither generator sees the other, so the item of a row is
    independent of its person. The epoch has ``max(num_persons, num_items)`` rows (the shorter
    stream continues with a fresh permutation), truncated to a multiple of W; rank r of W takes
    the rows r, r + W, ... (the same streams on every rank: Lightning's ``set_epoch`` keeps
    them in step). It subclasses ``DistributedSampler`` so that Lightning keeps it.
    """

    def __init__(
        self,
        num_persons: int,
        num_items: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        num_replicas, rank = replicas_and_rank(num_replicas, rank)
        if min(num_persons, num_items) < 1:
            raise SettingError(
                f"unpaired training needs persons and items, got {num_persons} and {num_items}"
            )
        length = max(num_persons, num_items)
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, seed=seed)
        self.num_persons, self.num_items = num_persons, num_items
        self.num_samples = max(length // num_replicas, 1)
        self.total_size = self.num_samples * num_replicas

    def stream(self, which: int) -> list[int]:
        """The whole epoch's stream 0 (persons) or 1 (items), all ranks."""
        count = (self.num_persons, self.num_items)[which]
        generator = torch.Generator().manual_seed(stream_seed(self.seed, which, self.epoch))
        order: list[int] = []
        while len(order) < self.total_size:
            order += torch.randperm(count, generator=generator).tolist()
        return order[: self.total_size]

    def __iter__(self):
        persons, items = self.stream(0), self.stream(1)
        rows = range(self.rank, self.total_size, self.num_replicas)
        return iter([(persons[k], items[k]) for k in rows])

    def __len__(self) -> int:
        return self.num_samples


class VitonDataModule(SplitDataModule):
    """VITON (CP-VTON or VITON-HD layout) or its synthetic twin, unpaired for training.

    Args:
        root: The VITON root; None resolves ``$LATENTLAB_DATA/viton`` else ``data/viton``.
        layout: ``auto`` (VITON-HD when ``train/image-parse-v3/`` exists), ``viton`` or
            ``viton_hd``.
        image_size: (H, W) every file must have; None takes the synthetic preset's, a twin's
            (its sidecar), else the layout's (256 x 192, VITON-HD 1024 x 768).
        load_size: (H, W) the images and masks are resized to when read (antialiased / nearest);
            None keeps ``image_size``.
        pairs: ``clean`` (``clean_*_pairs.txt``, from ``make data DATASET=viton``) or
            ``original`` (``*_pairs.txt``).
        batch_size: Rows per training batch (1 in the paper).
        eval_batch_size: Rows per validation / test batch; None takes ``batch_size``.
        num_workers: DataLoader workers.
        disjoint_items: Persons from the pairs of one seeded half of the training items, catalog
            items from the other half.
        val_fraction: Seeded fraction of the training pairs held out as matched validation
            pairs; 0 validates on the test split.
        with_pose: Also serve ``pose_a`` (OpenPose keypoints; all persons need one).
        test_cross: The test loaders are [matched pairs, cross pairs] (the twin only).
        seed: Seed of the streams, the item halves, the validation split and the twin.
        synthetic: ``tiny``, ``small`` or ``default``: when ``root`` holds no VITON,
            ``prepare_data`` writes (and cleans) the twin of that preset there.
    """

    predict_splits = ("test",)
    normalize = "signed"  # every image in [-1, 1]

    def __init__(
        self,
        root: str | None = None,
        layout: Literal["auto", "viton", "viton_hd"] = "auto",
        image_size: tuple[int, int] | None = None,
        load_size: tuple[int, int] | None = None,
        pairs: Literal["clean", "original"] = "clean",
        batch_size: int = 1,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        disjoint_items: bool = False,
        val_fraction: float = 0.0,
        with_pose: bool = False,
        test_cross: bool = False,
        seed: int = 0,
        synthetic: Literal["tiny", "small", "default"] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if layout not in ("auto", *LAYOUTS):
            raise ValueError(f"layout must be auto, viton or viton_hd, got {layout!r}")
        if pairs not in ("clean", "original"):
            raise ValueError(f"pairs must be clean or original, got {pairs!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError("batch sizes must be positive")
        self.splits: dict[str, Dataset] = {}
        self.cross: CrossPairs | None = None
        self._layout: Layout | None = None
        self._halves: tuple[set[str], set[str]] | None = None

    @property
    def root(self) -> Path:
        """The resolved data root."""
        return resolve_root(self.hparams.root, "viton")

    @property
    def file_size(self) -> tuple[int, int]:
        """(H, W) the files must have."""
        if self.hparams.image_size is not None:
            return tuple(self.hparams.image_size)
        if self.hparams.synthetic is not None:
            from datamodules.synthetic.viton import PRESETS

            preset = PRESETS[self.hparams.synthetic]
            return preset["height"], preset["width"]
        return native_size(self.root, self.layout)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the served images."""
        return tuple(self.hparams.load_size or self.file_size)

    @property
    def layout(self) -> Layout:
        """The layout read (detected under ``auto``)."""
        if self._layout is None:
            name = self.hparams.layout
            self._layout = detect_layout(self.root) if name == "auto" else LAYOUTS[name]
        return self._layout

    @property
    def has_cross_pairs(self) -> bool:
        """Whether the data has cross pairs with a true try-on (the twin); needs ``setup``."""
        return self.cross is not None and len(self.cross) > 0

    @property
    def item_halves(self) -> tuple[set[str], set[str]] | None:
        """(person half, catalog half) of the training items under ``disjoint_items``."""
        return self._halves

    def prepare_data(self) -> None:
        """With ``synthetic`` set: write and clean the twin unless an up-to-date one is there."""
        if self.hparams.synthetic is not None:
            from datamodules.synthetic.viton import ensure_twin

            ensure_twin(self.root, self.hparams.synthetic, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        """Read and check the pair lists and every pair's files; build the splits."""
        if self.splits:
            return
        hp, root = self.hparams, self.root
        if not root.is_dir():
            raise missing_dataset(root, root)
        pairs = {split: self._read_checked(split) for split in ("train", "test")}
        train, val = _hold_out(pairs["train"], hp.val_fraction, hp.seed)
        size = hp.load_size
        test = self._matched("test", pairs["test"])
        persons, items = train, _unique_items(train)
        if hp.disjoint_items:
            persons, items, self._halves = _disjoint(train, hp.seed)
        self.splits = {
            "train": UnpairedStreams(
                VitonPersons(root, "train", self.layout, persons, size, hp.with_pose),
                VitonItems(root, "train", items, size),
            ),
            "val": self._matched("train", val) if val else test,
            "test": test,
        }
        self.cross = self._read_cross(pairs["test"])
        if hp.test_cross and not self.has_cross_pairs:
            raise SettingError(
                f"--data.init_args.test_cross=true but {root / CROSS_PAIRS} lists no cross pair "
                "of the test split (only the synthetic twin has them): set it to false"
            )

    def _read_checked(self, split: str) -> list[Pair]:
        root, clean = self.root, self.hparams.pairs == "clean"
        path = pairs_file(root, split, clean)
        if not path.is_file():
            if clean and pairs_file(root, split, False).is_file():
                raise DatasetNotFoundError(
                    "VITON's clean pair lists",
                    root,
                    path,
                    f"Clean the copy once with `{make_data_command('viton', root)}`, or read the "
                    "original lists with `--data.init_args.pairs=original`.",
                )
            raise missing_dataset(root, path)
        pairs = read_pairs(path)
        check_pair_files(root, split, self.layout, pairs)
        if self.hparams.with_pose:
            poses = [person_files(root, split, self.layout, p.person)["pose"] for p in pairs]
            check_listed_files([(p.line, f) for p, f in zip(pairs, poses, strict=True)], path)
        for pair in pairs:
            check_pair_content(root, split, self.layout, pair, self.file_size)
        return pairs

    def _matched(self, split: str, pairs: list[Pair]) -> MatchedPairs:
        hp, size = self.hparams, self.hparams.load_size
        persons = VitonPersons(self.root, split, self.layout, pairs, size, hp.with_pose)
        return MatchedPairs(persons, VitonItems(self.root, split, pairs, size))

    def _read_cross(self, test: list[Pair]) -> CrossPairs | None:
        path = self.root / CROSS_PAIRS
        if not path.is_file():
            return None
        persons = {p.person for p in test}
        items = {p.cloth for p in test}
        cross = [p for p in read_pairs(path) if p.person in persons and p.cloth in items]
        files = [(p.line, f) for p in cross for f in cross_files(self.root, p).values()]
        check_listed_files(files, path)
        size, layout = self.hparams.load_size, self.layout
        persons = VitonPersons(self.root, "test", layout, cross, size, self.hparams.with_pose)
        worn = {p.person: p.cloth for p in test}
        return CrossPairs(persons, VitonItems(self.root, "test", cross, size), self.root, worn)

    def train_dataloader(self) -> DataLoader:
        """Unpaired rows from the two independent streams."""
        streams = self.splits["train"]
        sampler = UnpairedSampler(len(streams.persons), len(streams.items), self.hparams.seed)
        return self._loader("train", sampler=sampler)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Matched test pairs; with ``test_cross``, also the cross pairs (dataloader_idx 1)."""
        matched = self._loader("test")
        return [matched, self.cross_dataloader()] if self.hparams.test_cross else matched

    def cross_dataloader(self) -> DataLoader:
        """The twin's cross pairs (person i, item j, true try-on), each served once under DDP."""
        if self.cross is None:
            raise SettingError(f"{self.root / CROSS_PAIRS} does not exist: only the twin has it")
        return self._loader("cross", dataset=self.cross)


def _hold_out(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, a seeded ``fraction`` of them as validation pairs), file order kept."""
    if fraction == 0:
        return pairs, []
    count = max(1, round(fraction * len(pairs)))
    held = set(random.Random(seed).sample(range(len(pairs)), count))
    return [p for k, p in enumerate(pairs) if k not in held], [pairs[k] for k in sorted(held)]


def _unique_items(pairs: list[Pair]) -> list[Pair]:
    """The pairs of each distinct item once (its first pair)."""
    seen: dict[str, Pair] = {}
    for pair in pairs:
        seen.setdefault(pair.cloth, pair)
    return list(seen.values())


def _disjoint(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair], tuple[set, set]]:
    """Persons wearing the items of one seeded half, catalog items of the other half."""
    names = sorted({p.cloth for p in pairs})
    if len(names) < 2:
        raise SettingError("--data.init_args.disjoint_items=true needs two or more items")
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    half = (len(names) + 1) // 2
    mine, theirs = {names[k] for k in order[:half]}, {names[k] for k in order[half:]}
    persons = [p for p in pairs if p.cloth in mine]
    items = _unique_items([p for p in pairs if p.cloth in theirs])
    return persons, items, (mine, theirs)
