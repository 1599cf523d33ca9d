"""The parts of the disentangled AAE's analysis, one function per table or figure of the paper.

Each part reads the shared ``Context`` (data splits, device, options, output folder) and the
codes f of the stage runs (``Codes``), writes its PNG figures and returns its numbers as plain
JSON-ready values (floats, NaN as None). The pure pieces are in
``lightning_modules.disentangled_aae`` (``feature_blocks``, ``transfer``, ``retrieval``,
``expression_probe``, ``block_verification``, ``pose_error``, ``figures``); panels are
``callbacks.panels.image_table``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from rich.progress import track
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from callbacks.panels import image_table
from datamodules.expression_proxy import EXPRESSION_CLASSES, expression_labels
from datamodules.verification_pairs import VerificationPairs, verification_pairs
from experiments.batches import map_images
from lightning_modules.components.ridge_probe import probe_matrix
from lightning_modules.disentangled_aae.block_verification import (
    block_verification,
    pair_capacity,
)
from lightning_modules.disentangled_aae.expression_probe import expression_auc
from lightning_modules.disentangled_aae.factor_split import FactorSplit
from lightning_modules.disentangled_aae.feature_blocks import (
    FACTOR_BLOCKS,
    TABLE2_BLOCKS,
    TABLE3_BLOCKS,
    block_label,
    feature_block,
)
from lightning_modules.disentangled_aae.figures import CORRECT, WRONG, framed, probe_heatmap
from lightning_modules.disentangled_aae.pixels import pixel_rmse, to_unit
from lightning_modules.disentangled_aae.pose_error import ANGLES, pose_mae_degrees
from lightning_modules.disentangled_aae.retrieval import nearest_neighbours, precision_at_k
from lightning_modules.disentangled_aae.transfer import transfer_rows

__all__ = [
    "Codes",
    "Context",
    "encode",
    "expression_classes",
    "expression_figure",
    "expression_table",
    "interpolation_figure",
    "number",
    "pose_error",
    "pose_r2",
    "probe_matrix_figure",
    "reconstruction_figure",
    "reconstruction_table",
    "restrict",
    "retrieval",
    "samples_figure",
    "train_subset",
    "transfer_figure",
    "verification_pairs_of",
    "verification_table",
]


def number(value: float | Tensor | None) -> float | None:
    """A JSON number: a float, or None for NaN / inf / nothing."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Context:
    """What every part reads.

    Attributes:
        splits: ``train`` (the probes' training images: all or a seeded subset, unmirrored),
            ``val`` and ``test`` datasets of ``PosedFaces`` items, in file order.
        poses: Per split, (N, 3) pose labels in radians (fitted from the landmarks).
        identities: Per split, long (N,) identities.
        attributes: Per split, (N, 40) CelebA attributes in {0, 1}.
        attribute_names: The attribute columns' names.
        out_dir: Folder of the figures.
        device: Where the networks run.
        batch_size: Images per forward pass.
        num_workers: Loader workers.
        seed: Seed of every random choice.
        progress: Show progress bars.
        notes: Lines the analysis reports besides its numbers (appended to by the parts).
    """

    splits: dict[str, Dataset]
    poses: dict[str, Tensor]
    identities: dict[str, Tensor]
    attributes: dict[str, Tensor]
    attribute_names: list[str]
    out_dir: Path
    device: torch.device
    batch_size: int = 100
    num_workers: int = 0
    seed: int = 0
    progress: bool = True
    notes: list[str] = field(default_factory=list)

    def loader(self, split: str) -> DataLoader:
        """The split's images in file order."""
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator seeded ``seed + offset`` (one per random choice)."""
        return torch.Generator().manual_seed(self.seed + offset)

    def images(self, split: str, rows: Sequence[int]) -> Tensor:
        """Images ``rows`` of a split, (R, 3, S, S) in [-1, 1] on ``device``."""
        dataset = self.splits[split]
        return torch.stack([dataset[int(i)]["image"] for i in rows]).to(self.device)

    def save(self, image: Image.Image, name: str) -> str:
        """Write ``image`` as ``out_dir/name`` and return the file name."""
        image.save(self.out_dir / name)
        return name


def train_subset(dataset: Dataset, limit: int | None, generator: torch.Generator) -> Tensor:
    """Rows of the training images the probes train on: all, or ``limit`` drawn at random
    (sorted, so they are read in file order)."""
    n = len(dataset)
    if limit is None or limit >= n:
        return torch.arange(n)
    if limit < 1:
        raise ValueError(f"--train-images must be >= 1, got {limit}")
    return torch.randperm(n, generator=generator)[:limit].sort().values


def restrict(dataset: Dataset, rows: Tensor) -> Dataset:
    """The dataset itself when ``rows`` is all of it, else the subset."""
    if len(rows) == len(dataset):
        return dataset
    return Subset(dataset, rows.tolist())


# --- codes and reconstruction errors --------------------------------------------------------


@dataclass
class Codes:
    """f = Phi(E(x)) of one stage run on each split, (N, dim) on the CPU."""

    train: Tensor
    val: Tensor
    test: Tensor


def encode(context: Context, module: Any, stage: str) -> Codes:
    """The codes f of the train, val and test images under one stage run's module."""
    codes = {
        split: map_images(
            module.factors,
            context.loader(split),
            context.device,
            f"{stage}: f of {split}",
            context.progress,
        )
        for split in ("train", "val", "test")
    }
    return Codes(**codes)


@torch.no_grad()
def reconstruction_table(context: Context, modules: dict[str, Any]) -> dict[str, Any]:
    """Table 1: test RMSE of each stage's G(E(x)) (and G(Phi^-1(Phi(E(x))))) beside the mean
    image's, in the 0-255 scale."""
    rows = {}
    for stage, module in modules.items():
        errors: dict[str, list[Tensor]] = {"rmse": [], "rmse_phi": [], "rmse_mean_image": []}
        mean = module.mean_image.to(context.device)
        for batch in track(
            context.loader("test"), f"{stage}: reconstructions", disable=not context.progress
        ):
            x = batch["image"].to(context.device)
            z = module.encode(x)
            errors["rmse"].append(pixel_rmse(x, module.generate(z)).cpu())
            if stage != "ae":  # Phi is trained from Stage B on
                errors["rmse_phi"].append(pixel_rmse(x, module.decode_factors(module.phi(z))).cpu())
            errors["rmse_mean_image"].append(pixel_rmse(x, mean.expand_as(x)).cpu())
        values = {key: torch.cat(parts).mean() if parts else None for key, parts in errors.items()}
        if int(module.mean_image_count) == 0:
            values["rmse_mean_image"] = None
            context.notes.append(f"{stage}: the checkpoint holds no mean train image")
        rows[stage] = {key: number(value) for key, value in values.items()}
        rows[stage]["test_images"] = len(context.splits["test"])
    return rows


# --- Table 2: verification per block ----------------------------------------------------------


def _pairs(context: Context, split: str, per_kind: int, offset: int) -> VerificationPairs:
    """``per_kind`` same and as many different pairs of the split; a split with fewer distinct
    pairs of a kind gives as many of each as it has of the scarcer kind (balanced: chance stays
    50%), with a note."""
    same_max, different_max = pair_capacity(context.identities[split])
    count = min(per_kind, same_max, different_max)
    if count == 0:
        raise ValueError(
            f"verification needs same and different pairs in the {split} split, it has "
            f"{same_max} and {different_max}"
        )
    if count < per_kind:
        context.notes.append(
            f"the {split} split holds {same_max} distinct same-identity and {different_max} "
            f"different-identity pairs: {count} + {count} pairs used instead of "
            f"{per_kind} + {per_kind}"
        )
    return verification_pairs(context.identities[split], count, count, context.seed + offset)


def verification_pairs_of(context: Context, per_kind: int) -> dict[str, VerificationPairs]:
    """The fitting (val) and test pairs, shared by every stage."""
    return {
        "val": _pairs(context, "val", per_kind, 11),
        "test": _pairs(context, "test", per_kind, 12),
    }


def verification_table(
    context: Context, codes: Codes, split_of_f: FactorSplit, pairs: dict[str, VerificationPairs]
) -> dict[str, Any]:
    """Table 2's row of one stage: accuracy per block, threshold fitted on the val pairs."""
    result = block_verification(
        codes.val, pairs["val"], codes.test, pairs["test"], split_of_f, TABLE2_BLOCKS
    )
    return {
        "accuracy": {block: number(cell.accuracy) for block, cell in result.items()},
        "threshold": {block: number(cell.threshold) for block, cell in result.items()},
        "pairs": {
            split: {"same": int(p.same.sum()), "different": int((~p.same).sum())}
            for split, p in pairs.items()
        },
    }


# --- Table 3: expression probe ----------------------------------------------------------------


def expression_classes(context: Context, split: str) -> Tensor:
    """The proxy expression class of each image of a split ([SUBST] for AffectNet's labels)."""
    return expression_labels(context.attributes[split], context.attribute_names)[0]


def expression_table(context: Context, codes: Codes, split_of_f: FactorSplit) -> dict[str, Any]:
    """Table 3's rows of one stage: per-class and macro AUC of the probe on each block; also
    ``f_e_predicted``, the f_e probe's class of each test image (a tensor, for Fig. 6: pop it
    before writing the JSON)."""
    train_y, test_y = expression_classes(context, "train"), expression_classes(context, "test")
    rows, predicted = {}, None
    for block in TABLE3_BLOCKS:
        scores = expression_auc(
            (feature_block(codes.train, split_of_f, block).to(context.device), train_y),
            (feature_block(codes.test, split_of_f, block), test_y),
            len(EXPRESSION_CLASSES),
            seed=context.seed,
        )
        rows[block] = {
            "per_class": dict(
                zip(EXPRESSION_CLASSES, map(number, scores.per_class.tolist()), strict=True)
            ),
            "macro": number(scores.macro),
        }
        if block == "expression":
            predicted = scores.predicted
    counts = {
        split: dict(
            zip(
                EXPRESSION_CLASSES,
                torch.bincount(y, minlength=len(EXPRESSION_CLASSES)).tolist(),
                strict=True,
            )
        )
        for split, y in (("train", train_y), ("test", test_y))
    }
    return {"rows": rows, "class_counts": counts, "f_e_predicted": predicted}


# --- pose, probe matrix, retrieval ------------------------------------------------------------


def pose_error(context: Context, codes: Codes, split_of_f: FactorSplit) -> dict[str, float | None]:
    """MAE of f_p against the test poses, degrees per angle."""
    mae = pose_mae_degrees(codes.test, split_of_f, context.poses["test"])
    return dict(zip(ANGLES, map(number, mae.tolist()), strict=True))


def pose_r2(context: Context, codes: Codes, split_of_f: FactorSplit) -> dict[str, float | None]:
    """Mean test R^2 of a ridge probe from each sub-vector to the (fitted) pose angles."""
    features = {
        block: (
            feature_block(codes.train, split_of_f, block),
            feature_block(codes.test, split_of_f, block),
        )
        for block in FACTOR_BLOCKS
    }
    matrix = probe_matrix(features, {"pose": (context.poses["train"], context.poses["test"])})
    return {block: number(matrix[block]["pose"]) for block in FACTOR_BLOCKS}


def probe_matrix_figure(
    context: Context, stage: str, r2: dict, verification: dict, expression: dict
) -> str:
    """The probe heatmap of one stage: rows f_p .. f_s, columns pose / identity / expression."""
    values = [
        [r2[block], verification["accuracy"][block], expression["rows"][block]["macro"]]
        for block in FACTOR_BLOCKS
    ]
    columns = [
        "pose: ridge R^2\n[SUBST] fitted poses",
        "identity: verif. acc.\n[SUBST] CelebA pairs",
        "expression: AUC\n[SUBST] proxy labels",
    ]
    image = probe_heatmap(
        values,
        [block_label(b) for b in FACTOR_BLOCKS],
        columns,
        f"{stage}: what each sub-vector predicts (test split)",
    )
    return context.save(image, f"probe_matrix_{stage}.png")


def retrieval(
    context: Context, codes: Codes, split_of_f: FactorSplit, stage: str, k: int, queries: int
) -> dict[str, Any]:
    """Identity precision@k per sub-vector over the test gallery (each test image a query, itself
    left out) and Fig. 4: for ``queries`` test images, the top k per sub-vector."""
    identities = context.identities["test"]
    n = len(identities)
    if n <= k:
        raise ValueError(f"retrieval top-{k} needs more than {k} test images, got {n}")
    precision, neighbours = {}, {}
    for block in FACTOR_BLOCKS:
        gallery = feature_block(codes.test, split_of_f, block).to(context.device)
        found = nearest_neighbours(
            gallery, gallery, k, exclude=torch.arange(n, device=gallery.device)
        )
        precision[block] = number(precision_at_k(found, identities, identities).mean())
        neighbours[block] = found.cpu()
    chosen = torch.randperm(n, generator=context.generator(21))[:queries].tolist()
    rows, titles = [], []
    for q in chosen:
        for block in FACTOR_BLOCKS:
            shown = [q, *neighbours[block][q].tolist()]
            rows.append(list(to_unit(context.images("test", shown)).cpu()))
            titles.append(f"query {q}\n{block_label(block)}")
    figure = image_table(
        rows,
        ["query", *(f"{i}" for i in range(1, k + 1))],
        titles,
        title=f"{stage}: top-{k} test neighbours per sub-vector (L2)",
    )
    return {
        "identity_precision_at_k": precision,
        "k": k,
        "queries": chosen,
        "figure": context.save(figure, f"fig4_retrieval_{stage}.png"),
    }


# --- figures: reconstructions, samples, transfer ----------------------------------------------


@torch.no_grad()
def reconstruction_figure(context: Context, modules: dict[str, Any], count: int) -> str:
    """Fig. 3: test images beside each stage's G(E(x)) and, from Stage B on, its
    G(Phi^-1(Phi(E(x))))."""
    rows = torch.randperm(len(context.splits["test"]), generator=context.generator(31))[:count]
    x = context.images("test", rows.tolist())
    columns, titles = [to_unit(x).cpu()], ["input"]
    for stage, module in modules.items():
        z = module.encode(x)
        columns.append(to_unit(module.generate(z)).cpu())
        titles.append(f"{stage}\nG(E(x))")
        if stage != "ae":
            columns.append(to_unit(module.decode_factors(module.phi(z))).cpu())
            titles.append(f"{stage}\nG(Phi^-1(f))")
    table = [[column[i] for column in columns] for i in range(len(rows))]
    image = image_table(table, titles, title="Test reconstructions (Fig. 3)")
    return context.save(image, "fig3_reconstructions.png")


@torch.no_grad()
def samples_figure(context: Context, modules: dict[str, Any], count: int) -> str:
    """Random faces G(z*), one prior draw z* ~ N(0, I) shared by the stages (one row each)."""
    dim = next(iter(modules.values())).hparams.latent_dim
    z = torch.randn(count, dim, generator=context.generator(41)).to(context.device)
    rows = [list(to_unit(module.generate(z)).cpu()) for module in modules.values()]
    titles = [f"{stage}: G(z*)" for stage in modules]
    image = image_table(rows, [f"z*_{i + 1}" for i in range(count)], titles, title="Random faces")
    return context.save(image, "samples.png")


def _transfer_pairs(context: Context, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` (source, target) test rows, every image used once, the target of another
    identity than the source where the split has one."""
    identities = context.identities["test"].tolist()
    order = torch.randperm(len(identities), generator=context.generator(51)).tolist()
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for source in order:
        if len(pairs) == count:
            break
        if source in used:
            continue
        free = [t for t in order if t not in used and t != source]
        other = (t for t in free if identities[t] != identities[source])
        target = next(other, free[0] if free else None)
        if target is None:
            break
        used |= {source, target}
        pairs.append((source, target))
    return pairs


@torch.no_grad()
def transfer_figure(context: Context, module: Any, stage: str, count: int) -> dict[str, Any]:
    """Fig. 5 of one stage: per (source, target) column the two images, their decodings and the
    eight edited decodings (rows 1-4 one part from the source, rows 5-8 all but one)."""
    pairs = _transfer_pairs(context, count)
    sources = context.images("test", [s for s, _ in pairs])
    targets = context.images("test", [t for _, t in pairs])
    f_source, f_target = module.factors(sources), module.factors(targets)
    rows = [
        ("source", sources),
        ("target", targets),
        ("source decoded", module.decode_factors(f_source)),
        ("target decoded", module.decode_factors(f_target)),
    ]
    rows += [
        (title, module.decode_factors(f))
        for title, f in transfer_rows(f_source, f_target, module.split)
    ]
    table = [list(to_unit(images).cpu()) for _, images in rows]
    image = image_table(
        table,
        [f"pair {i + 1}" for i in range(len(pairs))],
        [title.replace(" from ", "\nfrom ") for title, _ in rows],
        title=f"{stage}: attribute transfer (Fig. 5)",
    )
    return {
        "pairs": [list(p) for p in pairs],
        "figure": context.save(image, f"fig5_transfer_{stage}.png"),
    }


@torch.no_grad()
def interpolation_figure(context: Context, modules: dict[str, Any], pairs: int, steps: int) -> str:
    """Latent interpolations (the paper's supplement): for ``pairs`` random test pairs (a, b),
    G((1 - t) E(a) + t E(b)) at ``steps`` evenly spaced t in [0, 1], one row per pair and stage,
    the two images at the ends."""
    if steps < 2:
        raise ValueError(f"an interpolation needs steps >= 2, got {steps}")
    order = torch.randperm(len(context.splits["test"]), generator=context.generator(61))
    ends = order[: 2 * pairs].view(-1, 2).tolist()
    weights = torch.linspace(0, 1, steps, device=context.device).view(-1, 1)
    rows, titles = [], []
    for stage, module in modules.items():
        for number_, (a, b) in enumerate(ends, 1):
            x = context.images("test", [a, b])
            z = module.encode(x)
            path = module.generate((1 - weights) * z[0] + weights * z[1])
            rows.append([to_unit(x[0]).cpu(), *to_unit(path).cpu(), to_unit(x[1]).cpu()])
            titles.append(f"{stage}\npair {number_}")
    columns = ["a", *(f"t={t:.2f}" for t in weights.flatten().tolist()), "b"]
    image = image_table(rows, columns, titles, title="Latent interpolations G((1-t) z_a + t z_b)")
    return context.save(image, "interpolations.png")


@torch.no_grad()
def expression_figure(
    context: Context, module: Any, predicted: Tensor, stage: str, count: int
) -> dict[str, Any]:
    """Fig. 6 of one stage: ``count`` random test images over their decodings G(Phi^-1(f)),
    each column titled with its proxy class and the f_e probe's prediction (``predicted``, the
    ``f_e_predicted`` of ``expression_table``), framed green where they agree and red where not."""
    test_y = expression_classes(context, "test")
    rows = torch.randperm(len(test_y), generator=context.generator(71))[:count].tolist()
    x = context.images("test", rows)
    decoded = module.decode_factors(module.factors(x))
    columns, images, recons = [], [], []
    for i, row in enumerate(rows):
        truth, guess = int(test_y[row]), int(predicted[row])
        colour = CORRECT if truth == guess else WRONG
        images.append(framed(to_unit(x[i]).cpu(), colour))
        recons.append(framed(to_unit(decoded[i]).cpu(), colour))
        columns.append(f"GT {EXPRESSION_CLASSES[truth]}\npred {EXPRESSION_CLASSES[guess]}")
    image = image_table(
        [images, recons],
        columns,
        ["input", "G(Phi^-1(f))"],
        title=f"{stage}: [SUBST] proxy expression vs the f_e probe (Fig. 6; green = agree)",
    )
    return {
        "rows": rows,
        "accuracy": number((predicted == test_y).double().mean()),
        "figure": context.save(image, f"fig6_expression_{stage}.png"),
    }
