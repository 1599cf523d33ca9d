"""The parts of the OLR analysis, one function per table or figure group of the paper.

Each takes the shared ``Inputs`` (data, saved embeddings, options, output folder), writes its
PNG figures and returns its numbers as a plain dict (tensors stay tensors; ``analyze`` turns
them into JSON). Figures are drawn by ``lightning_modules.olr.figures``,
``lightning_modules.olr.pair_figure`` and ``callbacks.panels``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from rich.progress import track
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from callbacks.auroc import per_attribute_auroc
from callbacks.image_quality.psnr import psnr
from callbacks.image_quality.ssim import ssim
from callbacks.panels import captioned_grid, figure_to_image, image_table, new_figure
from experiments.batches import map_images, same_outputs
from lightning_modules.olr.accuracy import majority_baseline_accuracy, per_label_accuracy
from lightning_modules.olr.collapse import pc1_ratio
from lightning_modules.olr.decoder import reconstruction_target
from lightning_modules.olr.edit_effects import fraction_moved, other_labels_shift, row_share
from lightning_modules.olr.editing import (
    EMPHASISED_SCALE,
    LabelGaussians,
    add_label,
    class_statistics,
    remove_label,
    swap_label,
)
from lightning_modules.olr.figures import editing_panel, norm_correlation_heatmap, pca_strip
from lightning_modules.olr.losses import row_dots
from lightning_modules.olr.mean_image import mean_image_scores
from lightning_modules.olr.norms import norm_auroc, norm_correlation
from lightning_modules.olr.pair_figure import pair_figure
from lightning_modules.olr.pca import collapsed_labels, label_pca, strip_indices

__all__ = [
    "Inputs",
    "classification",
    "editing",
    "norm_correlations",
    "occluded_pair",
    "pca_of_label",
    "reconstruction",
]


@dataclass
class Inputs:
    """What every part of the analysis reads.

    Attributes:
        names: The L label names.
        train_loader: Clean train images in file order (rows of ``train_embeddings``).
        test_loader: Clean test images in file order (rows of ``test_embeddings``).
        train_embeddings: (N_train, L, k) from the Siamese run's ``embeddings_train.pt``.
        test_embeddings: (N_test, L, k) from its ``embeddings_test.pt``.
        train_labels: (N_train, L) ground truth in {0, 1}.
        test_labels: (N_test, L) ground truth in {0, 1}.
        out_dir: Folder of the figures.
        device: Where the networks run.
        seed: Seed of every random choice (images shown, edits sampled).
        progress: Show progress bars.
        notes: Lines the analysis reports besides its numbers (appended to by the parts).
    """

    names: list[str]
    train_loader: DataLoader
    test_loader: DataLoader
    train_embeddings: Tensor
    test_embeddings: Tensor
    train_labels: Tensor
    test_labels: Tensor
    out_dir: Path
    device: torch.device
    seed: int = 0
    progress: bool = True
    notes: list[str] = field(default_factory=list)

    def index(self, name: str, flag: str) -> int:
        """The column of label ``name``; ``flag`` names the option that gave it in the error."""
        if name not in self.names:
            raise ValueError(f"{flag}: unknown label {name!r}; the labels are {self.names}")
        return self.names.index(name)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator seeded ``seed + offset`` (one per random choice)."""
        return torch.Generator().manual_seed(self.seed + offset)

    def save(self, image: Image.Image, name: str) -> str:
        """Write ``image`` as ``out_dir/name`` and return the file name."""
        image.save(self.out_dir / name)
        return name

    def map(self, fn: Callable[[Tensor], Tensor], loader: DataLoader, what: str) -> Tensor:
        return map_images(fn, loader, self.device, what, self.progress)


def _dataset(loader: DataLoader) -> Dataset:
    return loader.dataset


def _images(dataset: Dataset, rows: Sequence[int]) -> Tensor:
    return torch.stack([dataset[int(i)]["image"] for i in rows])


def _macro(values: Tensor) -> float:
    finite = values[~values.isnan()]
    return finite.mean().item() if finite.numel() else math.nan


def _text_figure(text: str) -> Image.Image:
    fig = new_figure(6.0, 1.0)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    return figure_to_image(fig)


def _choose(mask: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Up to ``count`` indices where ``mask`` is True, drawn at random without repetition."""
    rows = mask.nonzero().flatten()
    return rows[torch.randperm(rows.numel(), generator=generator)[:count]]


# --- 1. probe vs teacher vs majority (table), Fig. 3 -----------------------------------------


def classification(inputs: Inputs, teacher: Any, probe: Any, fig3_count: int) -> dict[str, Any]:
    """Label accuracy, macro AUROC and per-label accuracy of the probe, teacher and majority.

    The probe reads the saved test embeddings when its frozen encoder reproduces them, else its
    own encoder's embeddings of the test images. Fig. 3 shows test images where the probe is
    wrong and the teacher right.
    """
    labels = inputs.test_labels
    teacher_probs = inputs.map(lambda x: teacher(x).sigmoid(), inputs.test_loader, "teacher")
    if same_outputs(probe.encoder, inputs.test_loader, inputs.test_embeddings, inputs.device):
        probe_probs = probe.probe(inputs.test_embeddings.to(inputs.device)).sigmoid().cpu()
    else:
        inputs.notes.append(
            "the probe's frozen encoder does not reproduce embeddings_test.pt (other weights or "
            "settings, e.g. embed_act, than the Siamese run's): the probe is scored on its own "
            "encoder's embeddings"
        )
        probe_probs = inputs.map(lambda x: probe(x).sigmoid(), inputs.test_loader, "probe")
    accuracy = {
        "probe": per_label_accuracy(probe_probs, labels),
        "teacher": per_label_accuracy(teacher_probs, labels),
        "majority": majority_baseline_accuracy(inputs.train_labels, labels),
    }
    auroc = {
        "probe": per_attribute_auroc(probe_probs, labels)[0],
        "teacher": per_attribute_auroc(teacher_probs, labels)[0],
    }
    wrong = ((probe_probs >= 0.5) != labels.bool()) & ((teacher_probs >= 0.5) == labels.bool())
    figure = _fig3(inputs, wrong, probe_probs, teacher_probs, fig3_count)
    return {
        "label_accuracy": {key: value.mean().item() for key, value in accuracy.items()},
        "auroc_macro": {key: _macro(value) for key, value in auroc.items()},
        "per_label_accuracy": {key: _by_name(inputs.names, v) for key, v in accuracy.items()},
        "per_label_auroc": {key: _by_name(inputs.names, v) for key, v in auroc.items()},
        "norm_auroc": _by_name(inputs.names, norm_auroc(inputs.test_embeddings, labels)),
        "probe_wrong_teacher_right": int(wrong.sum()),
        "figures": {"fig3": figure},
    }


def _by_name(names: Sequence[str], values: Tensor) -> dict[str, float]:
    return dict(zip(names, values.double().tolist(), strict=True))


def _fig3(inputs: Inputs, wrong: Tensor, probe: Tensor, teacher: Tensor, count: int) -> str:
    cases = _choose(wrong.flatten(), count, inputs.generator(3))
    if cases.numel() == 0:
        image = _text_figure("no test image where the probe is wrong and the teacher right")
        return inputs.save(image, "fig3_probe_wrong_teacher_right.png")
    num_labels = wrong.shape[1]
    rows, columns = (cases // num_labels).tolist(), (cases % num_labels).tolist()
    captions = [
        f"{inputs.names[j]}: {bool(inputs.test_labels[i, j])}\n"
        f"probe {probe[i, j]:.2f}, teacher {teacher[i, j]:.2f}"
        for i, j in zip(rows, columns, strict=True)
    ]
    grid = captioned_grid(
        _images(_dataset(inputs.test_loader), rows),
        captions,
        title="Test images where the probe is wrong and the teacher right (label: truth)",
    )
    return inputs.save(grid, "fig3_probe_wrong_teacher_right.png")


# --- 2. norm correlations (Fig. 4) ------------------------------------------------------------

PAPER_PAIRS: tuple[tuple[str, str, float], ...] = (
    ("Big_Lips", "Attractive", 0.3),
    ("Wearing_Lipstick", "Attractive", 0.7),
    ("Bald", "Attractive", -0.2),
    ("Double_Chin", "Gray_Hair", 0.5),
    ("Young", "Bald", -0.3),
    ("High_Cheekbones", "Attractive", 0.3),
    ("Male", "Big_Nose", 0.6),
    ("Male", "Heavy_Makeup", -0.8),
    ("Smiling", "Attractive", 0.2),
)
"""The nine Pearson r values between label-embedding norms quoted in the paper's text."""


def norm_correlations(inputs: Inputs, independent: Sequence[str]) -> dict[str, Any]:
    """Pearson r between label-embedding norms over train + test (Fig. 4) and assertion 4's pairs.

    Args:
        inputs: The shared inputs.
        independent: Two labels the data draws independently (their |r| should be small).
    """
    result = norm_correlation(torch.cat([inputs.train_embeddings, inputs.test_embeddings]))
    r, names = result.r, inputs.names

    def pair(a: str, b: str, flag: str) -> float:
        return r[inputs.index(a, flag), inputs.index(b, flag)].item()

    message = result.undefined_message(names)
    if message:
        inputs.notes.append(message)
    first, second = independent
    figure = inputs.save(norm_correlation_heatmap(r, names), "fig4_norm_correlation.png")
    return {
        "r_lipstick_makeup": pair("Wearing_Lipstick", "Heavy_Makeup", "assertion 4"),
        "r_male_makeup": pair("Male", "Heavy_Makeup", "assertion 4"),
        "independent_pair": [first, second],
        "abs_r_independent": abs(pair(first, second, "--independent")),
        "paper_pairs": [
            {"a": a, "b": b, "paper": value, "r": pair(a, b, "paper pairs")}
            for a, b, value in PAPER_PAIRS
            if a in names and b in names
        ],
        "matrix": r,
        "figures": {"fig4": figure},
    }


# --- 3. PCA of one label (Fig. 5) -------------------------------------------------------------


def pca_of_label(inputs: Inputs, label: str, strip_count: int) -> dict[str, Any]:
    """PCA of one label's embeddings over all images, its PC1 separation and the ordered strip."""
    column = inputs.index(label, "--pca-label")
    embeddings = torch.cat([inputs.train_embeddings, inputs.test_embeddings])
    labels = torch.cat([inputs.train_labels, inputs.test_labels])
    pca = label_pca(embeddings, column, labels)
    auroc = per_attribute_auroc(pca.projection[:, None].cpu(), labels[:, column : column + 1])[0]
    indices, ranks = strip_indices(pca.projection, count=strip_count)
    n_train = len(inputs.train_embeddings)
    images = [
        _dataset(inputs.train_loader)[i]["image"]
        if i < n_train
        else _dataset(inputs.test_loader)[i - n_train]["image"]
        for i in indices.tolist()
    ]
    strip = pca_strip(
        images,
        pca.projection[indices],
        ncols=max(1, math.ceil(strip_count / 2)),
        title=f"{label}: images at PC1 ranks {', '.join(map(str, ranks.tolist()))} "
        f"of {len(embeddings)}",
    )
    ratios = pc1_ratio(embeddings)
    collapsed, message = collapsed_labels(ratios, inputs.names)
    if message:
        inputs.notes.append(message)
    return {
        "label": label,
        "pc1_ratio": pca.explained_variance_ratio[0].item(),
        "pc2_ratio": pca.explained_variance_ratio[1].item(),
        "pc1_auroc": auroc[0].item(),
        "strip_ranks": ranks.tolist(),
        "strip_projections": pca.projection[indices].tolist(),
        "pc1_ratio_per_label": _by_name(inputs.names, ratios),
        "collapsed_labels": collapsed,
        "figures": {"fig5": inputs.save(strip, "fig5_pca_strip.png")},
    }


# --- 4. reconstructions (Fig. 6) --------------------------------------------------------------


def reconstruction(inputs: Inputs, decoder: Any, shown: int) -> dict[str, Any]:
    """Test SSIM, PSNR and MSE of x^ = Rescale(R(E)) against x~, beside the mean train image.

    Embeddings come from the decoder's own frozen encoder. Returns also (private keys) the
    decoder-space train and test embeddings the editing part uses.
    """
    encoder = decoder.encoder
    if decoder.mean_image_count == 0:
        raise ValueError("the decoder checkpoint holds no mean train image (mean_image_count 0)")
    scores: dict[str, list[Tensor]] = {k: [] for k in ("ssim", "psnr", "mse", "base_ssim")}
    scores |= {"base_mse": [], "base_psnr": []}
    embeddings, pairs = [], []
    with torch.no_grad():
        for batch in track(inputs.test_loader, "reconstructions", disable=not inputs.progress):
            images = batch["image"].to(inputs.device)
            e = encoder(images).float()
            x_hat, target = decoder.decode(e), reconstruction_target(images)
            embeddings.append(e.cpu())
            scores["ssim"].append(ssim(x_hat, target).cpu())
            scores["psnr"].append(psnr(x_hat, target).cpu())
            scores["mse"].append((x_hat.double() - target.double()).square().flatten(1).mean(1))
            base_ssim, base_mse = mean_image_scores(decoder.mean_image, target)
            scores["base_ssim"].append(base_ssim.cpu())
            scores["base_mse"].append(base_mse.cpu())
            scores["base_psnr"].append(psnr(decoder.mean_image.expand_as(target), target).cpu())
            missing = shown - len(pairs)  # only the images Fig. 6 shows stay in memory
            pairs.extend(zip(target[:missing].cpu(), x_hat[:missing].cpu(), strict=True))
    means = {
        key: torch.cat([v.cpu() for v in values]).mean().item() for key, values in scores.items()
    }
    test = torch.cat(embeddings)
    if same_outputs(encoder, inputs.train_loader, inputs.train_embeddings, inputs.device):
        train = inputs.train_embeddings
    else:
        inputs.notes.append(
            "the decoder's frozen encoder does not reproduce embeddings_train.pt (other weights "
            "or settings, e.g. embed_act, than the Siamese run's): reconstructions and the class "
            "statistics for editing use its own encoder's embeddings"
        )
        train = inputs.map(lambda x: encoder(x), inputs.train_loader, "train embeddings")
    rows = [[image for pair in pairs[i : i + 3] for image in pair] for i in range(0, shown, 3)]
    rows = [row for row in rows if len(row) == 6]
    if not rows:
        raise ValueError(f"Fig. 6 needs at least 3 test images, got {len(pairs)}")
    table = image_table(rows, ["original", "reconstruction"] * 3, title="Test reconstructions")
    return {
        "ssim": means["ssim"],
        "psnr": means["psnr"],
        "mse": means["mse"],
        "mean_image": {
            "ssim": means["base_ssim"],
            "psnr": means["base_psnr"],
            "mse": means["base_mse"],
        },
        "figures": {"fig6": inputs.save(table, "fig6_reconstructions.png")},
        "_train_embeddings": train,
        "_test_embeddings": test,
    }


# --- 5. editing (Figs. 7-8) -------------------------------------------------------------------


@dataclass
class Editor:
    """Decodes embeddings and scores the decoded images with the teacher.

    The decoder outputs images 2 px smaller than the teacher's input (the crop without its 1-px
    border); they are padded back by 1 px on every side, repeating the border pixels, so every
    pixel sits where it sat in the crop the teacher was trained on (resizing would rescale the
    face by S / (S - 2) and shift every feature).
    """

    decoder: Any
    teacher: Any
    stats: LabelGaussians
    device: torch.device
    chunk: int = 128

    def decode(self, embeddings: Tensor) -> Tensor:
        with torch.no_grad():
            parts = [
                self.decoder.decode(e.to(self.device)).cpu() for e in embeddings.split(self.chunk)
            ]
        return torch.cat(parts)

    def score(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            parts = [
                self.teacher(F.pad(x.to(self.device), (1, 1, 1, 1), mode="replicate"))
                .sigmoid()
                .float()
                .cpu()
                for x in images.split(self.chunk)
            ]
        return torch.cat(parts)


def editing(
    inputs: Inputs,
    decoder: Any,
    teacher: Any,
    train_embeddings: Tensor,
    test_embeddings: Tensor,
    options: Any,
) -> dict[str, Any]:
    """Assertion 7's numbers for ``options.edit_label`` and the editing panels (Figs. 7-8).

    ``train_embeddings`` / ``test_embeddings`` are in the decoder's encoder space (class
    statistics from the train positives, eqs. 4-5). Adds the label to up to
    ``options.edit_count`` test negatives (s = 1 and 1.5) and zeroes it on as many positives.
    ``row_share``: the part of C's gap between the reconstructions of positives and negatives
    that the label's own row carries (negatives decoded with the positives' rows).
    """
    stats = class_statistics(train_embeddings, inputs.train_labels)
    editor = Editor(decoder, teacher, stats, inputs.device)
    label = options.edit_label
    column = inputs.index(label, "--edit-label")
    others = [inputs.index(n, "--other-labels") for n in options.other_labels if n != label]
    if int(stats.count[column]) == 0:
        raise ValueError(f"--edit-label {label}: no positive train image to fit its Gaussian")
    y = inputs.test_labels[:, column].bool()
    negatives = _choose(~y, options.edit_count, inputs.generator(7))
    positives = _choose(y, options.edit_count, inputs.generator(8))
    if negatives.numel() == 0 or positives.numel() == 0:
        raise ValueError(
            f"--edit-label {label}: the test split needs negatives and positives, has "
            f"{negatives.numel()} and {positives.numel()}"
        )
    e_neg, e_pos = test_embeddings[negatives], test_embeddings[positives]
    recon_neg, recon_pos = editor.decode(e_neg), editor.decode(e_pos)
    added = {  # the same draws v at both scales: s = 1.5 emphasises the s = 1 edit
        s: editor.decode(add_label(e_neg, column, stats, s, inputs.generator(9)))
        for s in (1.0, EMPHASISED_SCALE)
    }
    removed = editor.decode(remove_label(e_pos, column))
    before_neg, before_pos = editor.score(recon_neg), editor.score(recon_pos)
    after = {s: editor.score(images) for s, images in added.items()}
    after_removed = editor.score(removed)
    pairs = min(len(e_neg), len(e_pos))  # negative i decoded with positive i's row of the label
    given_row = editor.score(editor.decode(swap_label(e_neg[:pairs], e_pos[:pairs], column)))
    shifts = [other_labels_shift(before_neg, after[1.0], others)] if others else []
    if others:
        shifts.append(other_labels_shift(before_pos, after_removed, others))
    result = {
        "label": label,
        "negatives": int(negatives.numel()),
        "positives": int(positives.numel()),
        "add_raised_fraction": fraction_moved(before_neg, after[1.0], column, 1),
        "add_emphasised_raised_fraction": fraction_moved(
            before_neg, after[EMPHASISED_SCALE], column, 1
        ),
        "remove_dropped_fraction": fraction_moved(before_pos, after_removed, column, -1),
        "other_labels": [inputs.names[j] for j in others],
        "other_labels_mean_abs_delta_add": shifts[0] if shifts else math.nan,
        "other_labels_mean_abs_delta_remove": shifts[1] if shifts else math.nan,
        "other_labels_mean_abs_delta": sum(shifts) / len(shifts) if shifts else math.nan,
        "row_share": row_share(before_pos[:pairs], before_neg[:pairs], given_row, column),
        "teacher_input": "decoded images padded by 1 px (replicated border) to the teacher's size",
    }
    rows = options.panel_rows
    test_set = _dataset(inputs.test_loader)
    add_notes = _notes(f"+{label}", before_neg, [after[1.0], after[EMPHASISED_SCALE]], column, rows)
    remove_notes = _notes(f"-{label}", before_pos, [after_removed], column, rows)
    figures = {
        "add": _panel(
            inputs,
            _images(test_set, negatives[:rows]),
            recon_neg[:rows],
            [added[1.0][:rows], added[EMPHASISED_SCALE][:rows]],
            add_notes,
            ("s = 1", f"s = {EMPHASISED_SCALE}"),
            f"editing_add_{label}.png",
        ),
        "remove": _panel(
            inputs,
            _images(test_set, positives[:rows]),
            recon_pos[:rows],
            [removed[:rows]],
            remove_notes,
            ("zeroed",),
            f"editing_remove_{label}.png",
        ),
    }
    fig7, skipped7 = _fig7(inputs, editor, test_embeddings, options.fig7_edits)
    fig8, skipped8 = _fig8(inputs, editor, test_embeddings, options.fig8_labels)
    figures |= {"fig7": fig7, "fig8": fig8}
    for line in skipped7 + skipped8:
        inputs.notes.append(line)
    return result | {"figures": figures}


def _notes(edit: str, before: Tensor, after: list[Tensor], column: int, rows: int) -> list[str]:
    """Per image: the edit and the teacher's probability of the label, before -> each after."""
    return [
        f"{edit}\np {before[i, column]:.2f} -> " + " / ".join(f"{a[i, column]:.2f}" for a in after)
        for i in range(min(rows, len(before)))
    ]


def _panel(inputs, originals, recons, edited, notes, titles, name) -> str:
    panel = editing_panel(reconstruction_target(originals), recons, edited, notes, titles)
    return inputs.save(panel, name)


def _edit_case(
    inputs: Inputs, editor: Editor, name: str, add: bool, offset: int, flag: str
) -> tuple[int, int] | str:
    """(test row, label column) of one image to edit, or why there is none."""
    column = inputs.index(name, flag)
    if add and int(editor.stats.count[column]) == 0:
        return f"{flag}: +{name} skipped: no positive train image to fit its Gaussian"
    mask = inputs.test_labels[:, column].bool()
    rows = _choose(~mask if add else mask, 1, inputs.generator(100 + offset))
    if rows.numel() == 0:
        kind = "negative" if add else "positive"
        return f"{flag}: {'+' if add else '-'}{name} skipped: no {kind} test image"
    return int(rows[0]), column


def _fig7(inputs, editor, embeddings, edits: Sequence[str]) -> tuple[str, list[str]]:
    """One row per edit "+Label" / "-Label": original | recon | edited | the edit."""
    originals, recons, edited, notes, skipped = [], [], [], [], []
    for offset, edit in enumerate(edits):
        if edit[:1] not in "+-" or len(edit) < 2:
            raise ValueError(f"--fig7-edits: {edit!r} must be +Label or -Label")
        add, name = edit[0] == "+", edit[1:]
        case = _edit_case(inputs, editor, name, add, offset, "--fig7-edits")
        if isinstance(case, str):
            skipped.append(case)
            continue
        row, column = case
        e = embeddings[row : row + 1]
        changed = (
            add_label(e, column, editor.stats, 1.0, inputs.generator(200 + offset))
            if add
            else remove_label(e, column)
        )
        originals.append(_dataset(inputs.test_loader)[row]["image"])
        recons.append(editor.decode(e)[0])
        edited.append(editor.decode(changed)[0])
        notes.append(edit)
    if not notes:
        return inputs.save(
            _text_figure("no edit of --fig7-edits applies"), "fig7_editing.png"
        ), skipped
    panel = editing_panel(
        reconstruction_target(torch.stack(originals)), recons, [edited], notes, ("edited",)
    )
    return inputs.save(panel, "fig7_editing.png"), skipped


def _fig8(inputs, editor, embeddings, labels: Sequence[str]) -> tuple[str, list[str]]:
    """Per label two negatives: original | recon | s = 1 | s = 1.5 | "+Label"."""
    originals, recons, plain, emphasised, notes, skipped = [], [], [], [], [], []
    for offset, name in enumerate(labels):
        for copy in range(2):
            case = _edit_case(inputs, editor, name, True, 50 + 2 * offset + copy, "--fig8-labels")
            if isinstance(case, str):
                skipped.append(case)
                break
            row, column = case
            e = embeddings[row : row + 1]
            g = inputs.generator(300 + 2 * offset + copy)
            v = add_label(e, column, editor.stats, 1.0, g)[:, column]  # one draw, two scales
            originals.append(_dataset(inputs.test_loader)[row]["image"])
            recons.append(editor.decode(e)[0])
            for scale, column_images in ((1.0, plain), (EMPHASISED_SCALE, emphasised)):
                changed = e.clone()
                changed[:, column] = scale * v
                column_images.append(editor.decode(changed)[0])
            notes.append(f"+{name}")
    if not notes:
        return inputs.save(
            _text_figure("no edit of --fig8-labels applies"), "fig8_emphasis.png"
        ), skipped
    panel = editing_panel(
        reconstruction_target(torch.stack(originals)),
        recons,
        [plain, emphasised],
        notes,
        ("s = 1", f"s = {EMPHASISED_SCALE}"),
    )
    return inputs.save(panel, "fig8_emphasis.png"), skipped


# --- 6. one occluded pair (Fig. 2) ------------------------------------------------------------


def occluded_pair(inputs: Inputs, siamese: Any, pairs: Dataset, index: int) -> dict[str, Any]:
    """Fig. 2: held-out pair ``index``: p_a, p_b (the Siamese run's frozen teacher), t and u."""
    if not 0 <= index < len(pairs):
        raise ValueError(f"--pair-index {index}: the held-out pairs are 0..{len(pairs) - 1}")
    batch = default_collate([pairs[index]])
    batch = {k: v.to(inputs.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    with torch.no_grad():
        losses, target, e_a, e_b = siamese.pair_step(batch)
        p_a = siamese.teacher_logits(batch["image_a"]).sigmoid()[0].cpu()
        p_b = siamese.teacher_logits(batch["image_b"]).sigmoid()[0].cpu()
        u = row_dots(e_a.float(), e_b.float())[0].cpu()
    series = {"p_a": p_a, "p_b": p_b, "t = p_a p_b": target[0].cpu(), "u = <e_a, e_b>": u}
    figure = pair_figure(
        batch["image_a"][0].cpu(),
        batch["image_b"][0].cpu(),
        series,
        inputs.names,
        title=f"Held-out pair {index}: pair loss {losses[0].item():.4f}",
    )
    return {
        "index": index,
        "image_ids": [batch.get("image_id_a", ["?"])[0], batch.get("image_id_b", ["?"])[0]],
        "pair_loss": losses[0].item(),
        "figures": {"fig2": inputs.save(figure, "fig2_occluded_pair.png")},
    }
