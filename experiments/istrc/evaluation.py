"""The computed numbers of the ISTRC analysis (spec "Evaluation"), one function per quantity group.

Each takes the shared ``Context`` (test set, models, device) and returns plain numbers (private
``_`` keys carry tensors the figures reuse):

- ``mapping_r2``: F's R^2 = 1 - MSE / mean_d Var(h_d) recomputed on the cached test split (the
  mapping module's own ``MappingScores``);
- ``classifier_aurocs``: C_a's test AUROC per attribute from the logits on the cached test z
  (``callbacks.auroc.per_attribute_auroc``, what ``LogAUROC`` logged);
- ``circle``: SSIM(x, x^) beside SSIM(x, mean train image) on [0, 1] images, the Fréchet distance
  of x^ against x, identity retention cos(E(x^), E(x)), rank-1 identity and exact-image retrieval
  of E(x^) in {E(x)} beside chance, E's norms on x and x^, and the judge's AUROC of the edited
  attributes on x and on x^ (whether the reconstructions still show them to the judge);
- ``edits``: for each edited attribute, test inputs whose label is not the target (at most
  ``count``, seeded) edited in one batched ``semantic_transformation`` (every step kept), scored
  by ``edit_scores`` against the judge and E; with the label-shuffled control beside it, also
  the fraction of inputs whose trained edit the judge scores above their control edit (paired).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.progress import track
from torch import Tensor, nn

from callbacks.auroc import per_attribute_auroc
from callbacks.image_quality.ssim import ssim
from experiments.istrc.directions import direction_name, target_of
from experiments.istrc.edit_scores import edit_success, path_checks, towards
from experiments.istrc.frechet import FEATURE_SPACES, feature_frechet
from experiments.istrc.retrieval import rank1_retrieval
from experiments.istrc.stages import Circle, Judge, TestSet, apply_in_chunks
from lightning_modules.istrc.edit_path import semantic_transformation
from lightning_modules.istrc.mapping import MappingScores

__all__ = [
    "Context",
    "EditSettings",
    "circle",
    "classifier_aurocs",
    "edit_rows",
    "edits",
    "mapping_r2",
    "to_unit",
]


def to_unit(images: Tensor) -> Tensor:
    """[-1, 1] images -> [0, 1] (SSIM's and the figures' range)."""
    return ((images + 1) / 2).clamp(0, 1)


@dataclass
class Context:
    """What every part reads.

    Attributes:
        test: The test split (images, cached latents, labels).
        encoder: E, [-1, 1] images -> unit z (eval mode, on ``device``).
        judge: The independent pixel-space attribute classifier.
        mean_image: (3, S, S) the BEGAN's mean train image in [-1, 1].
        device: Where the networks run.
        seed: Seed of every random choice.
        progress: Show progress bars.
        notes: Lines reported beside the numbers (appended to by the parts).
        inception: The FID Inception-v3 when its features are used, else None (judge features).
        judged: Attributes whose judge AUROC on x and on x^ the circle reports (the edited ones:
            can the judge read them on reconstructions at all?).
    """

    test: TestSet
    encoder: nn.Module
    judge: Judge
    mean_image: Tensor
    device: torch.device
    seed: int = 0
    progress: bool = True
    notes: list[str] = field(default_factory=list)
    inception: nn.Module | None = None
    judged: list[str] = field(default_factory=list)

    def encode(self, images: Tensor) -> Tensor:
        """E(images): (B, D) unit rows."""
        return apply_in_chunks(self.encoder, images, self.device)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator seeded ``seed + offset`` (one per random choice)."""
        return torch.Generator().manual_seed(self.seed + offset)

    def fid_features(self, images: Tensor) -> Tensor:
        """The features of the Fréchet distance: Inception's on [0, 1], else the judge's."""
        if self.inception is not None:
            return apply_in_chunks(self.inception, to_unit(images), self.device, chunk=64)
        return self.judge.features(images)


def mapping_r2(mapping: nn.Module, test: TestSet, device: torch.device) -> dict[str, float]:
    """F's test MSE and R^2 on the cached (z, h) pairs, as the mapping run logs them."""
    scores = MappingScores(test.h.shape[1])
    scores.update(apply_in_chunks(mapping, test.z, device), test.h)
    mse, r2 = scores.compute()
    return {"mse": mse.item(), "r2": r2.item()}


def classifier_aurocs(
    classifiers: Any, test: TestSet, device: torch.device
) -> dict[str, float | None]:
    """C_a's test AUROC per attribute of ``classifiers.attributes`` on the cached test z."""
    names = list(classifiers.attributes)
    logits = apply_in_chunks(classifiers.logits, test.z, device)
    columns = [test.column(n, "classifier attributes") for n in names]
    auroc, _, _ = per_attribute_auroc(logits, test.labels[:, columns])
    return dict(zip(names, auroc.tolist(), strict=True))


def circle(ctx: Context, mapping_circle: Circle, shown: int = 0) -> dict[str, Any]:
    """The circle's scores on the whole test split with one mapping F (trained or control)."""
    test = ctx.test
    x_hat = mapping_circle.decode(test.z)
    x, target = to_unit(test.images), to_unit(x_hat)
    mean = to_unit(ctx.mean_image).expand_as(x)
    e_x, e_hat = ctx.encode(test.images), ctx.encode(x_hat)
    retrieval = rank1_retrieval(e_hat, e_x, test.identity, test.identity)
    cosine = torch.nn.functional.cosine_similarity(e_hat.double(), e_x.double(), dim=1)
    features_x, features_hat = ctx.fid_features(test.images), ctx.fid_features(x_hat)
    judge_auroc = {
        name: {
            "x": _judge_auroc(ctx, test.images, name),
            "x_hat": _judge_auroc(ctx, x_hat, name),
        }
        for name in ctx.judged
    }
    return {
        "images": int(x.shape[0]),
        "ssim": ssim(target, x).mean().item(),
        "ssim_mean_image": ssim(mean, x).mean().item(),
        "l1": (x_hat - test.images).abs().mean().item(),
        "fid": feature_frechet(features_hat, features_x),
        "fid_name": FEATURE_SPACES["inception" if ctx.inception is not None else "judge"],
        "identity_cosine": cosine.mean().item(),
        "retrieval": retrieval,
        "encoder_norm_error": max(
            (e.double().norm(dim=1) - 1).abs().max().item() for e in (e_x, e_hat)
        ),
        "encoder_matches_cache": (e_x - test.z).abs().max().item(),
        "judge_auroc": judge_auroc,
        "_x_hat": x_hat,
    }


def _judge_auroc(ctx: Context, images: Tensor, name: str) -> float:
    """The judge's AUROC of ``name`` on ``images`` against the test labels."""
    scores = ctx.judge.probs(images)[:, ctx.judge.column(name)]
    labels = ctx.test.labels[:, ctx.test.column(name)]
    return per_attribute_auroc(scores[:, None], labels[:, None])[0][0].item()


@dataclass(frozen=True)
class EditSettings:
    """The semantic transformation's schedule and how many test inputs are edited."""

    steps: int = 500
    every: int = 50
    step_distance: float = 0.002
    count: int = 200


def edit_rows(test: TestSet, attribute: str, count: int, generator: torch.Generator) -> Tensor:
    """Up to ``count`` test rows whose label of ``attribute`` is not its target, seeded, sorted."""
    column = test.column(attribute, "--edit-attributes")
    rows = (test.labels[:, column] != target_of(attribute)).nonzero().flatten()
    return rows[torch.randperm(rows.numel(), generator=generator)[:count]].sort().values


def _edit(
    ctx: Context,
    mapping_circle: Circle,
    classifiers: Any,
    attribute: str,
    rows: Tensor,
    settings: EditSettings,
    others: Sequence[int],
) -> dict[str, Any]:
    target = target_of(attribute)
    z0 = ctx.test.z[rows]
    network = classifiers.logit_network(attribute)
    path = semantic_transformation(
        network, z0.to(ctx.device), target, settings.steps, 1, settings.step_distance
    )
    full = path.snapshots.cpu()  # (steps, B, D): every step
    x_hat, edited = mapping_circle.decode(z0), mapping_circle.decode(full[-1])
    before, after = ctx.judge.probs(x_hat), ctx.judge.probs(edited)
    column = ctx.judge.column(attribute)
    scores = edit_success(
        path.probabilities[-1].cpu(),
        before,
        after,
        column,
        target,
        float(ctx.judge.thresholds[column]),
        others,
    )
    drift = torch.nn.functional.cosine_similarity(
        ctx.encode(edited).double(), ctx.encode(x_hat).double(), dim=1
    )
    checks = path_checks(z0.double(), full.double(), settings.step_distance)
    judged = towards(after[:, column], target)  # private: the paired comparison of the sets
    return scores | checks | {"identity_cosine": drift.mean().item(), "_judge_after": judged}


def edits(
    ctx: Context,
    mapping_circle: Circle,
    classifier_sets: dict[str, Any],
    attributes: Sequence[str],
    settings: EditSettings,
    other_names: Sequence[str],
) -> dict[str, Any]:
    """Edit scores per attribute and classifier set (``{"trained": C, "shuffled": C'}``).

    The same test rows are edited by every set; ``other_names`` are the judge's attributes whose
    |delta p| is averaged (the edited one left out).
    """
    results: dict[str, Any] = {}
    jobs = [(a, name) for a in attributes for name in classifier_sets]
    rows = {
        a: edit_rows(ctx.test, a, settings.count, ctx.generator(11 + i))
        for i, a in enumerate(attributes)
    }
    others = [ctx.judge.column(n) for n in other_names if n in ctx.judge.names]
    for attribute, name in track(jobs, "edits", disable=not ctx.progress):
        entry = results.setdefault(
            attribute,
            {
                "target": target_of(attribute),
                "direction": direction_name(attribute),
                "eligible": int(rows[attribute].numel()),
            },
        )
        if rows[attribute].numel() == 0:
            ctx.notes.append(f"edit {attribute}: no test input whose label is not the target")
            continue
        entry[name] = _edit(
            ctx,
            mapping_circle,
            classifier_sets[name],
            attribute,
            rows[attribute],
            settings,
            [j for j in others if j != ctx.judge.column(attribute)],
        )
    for entry in results.values():
        after = {name: entry[name].pop("_judge_after") for name in classifier_sets if name in entry}
        if {"trained", "shuffled"} <= set(after):
            beats = after["trained"] > after["shuffled"]
            entry["trained_above_shuffled"] = beats.double().mean().item()
    return results
