"""OLR's analyses and label editing on finished stage runs: the last step of the OLR pipeline.

    python -m experiments.olr.analyze --root runs

reads the newest runs of the four stages under ``--root`` (``<root>/<name>/<timestamp>/``; names
from ``--teacher``, ``--siamese``, ``--probe``, ``--decoder``, default ``olr/synthetic_*``), each
module loaded with its class's ``load_from_checkpoint`` from the run's best checkpoint (else
``last.ckpt``), the data rebuilt from the ``data`` section of the Siamese run's ``config.yaml``
and the embeddings from its ``embeddings_train.pt`` / ``embeddings_test.pt``, and writes into
``<root>/analysis/`` (``--out``):

- ``analysis.json``: every number (below), the runs and checkpoints used, notes;
- ``analysis.md``: the headline numbers as a table;
- ``fig2_occluded_pair.png``: one held-out occluded pair, bars of p_a, p_b, t and u per label;
- ``fig3_probe_wrong_teacher_right.png``: test images where the probe errs and the teacher not;
- ``fig4_norm_correlation.png``: Pearson r between label-embedding norms (train + test);
- ``fig5_pca_strip.png``: images at evenly spaced ranks of one label's PC1 projection;
- ``fig6_reconstructions.png``: test crops x~ beside their reconstructions;
- ``fig7_editing.png``, ``fig8_emphasis.png``, ``editing_add_<label>.png``,
  ``editing_remove_<label>.png``: edits before and after;
- ``training_curves.png``: L_S, L_R's SSIM and MSE parts and the probe accuracy per epoch.

Numbers: probe, teacher and train-majority label accuracy, macro AUROC and per-label accuracy on
the test split; per-label norm AUROC (test embeddings); the norm correlations of the spec's
assertion 4; PC1 / PC2 explained variance and PC1 AUROC of ``--pca-label`` (assertion 5); test
SSIM / PSNR / MSE of the reconstructions against the mean train image (assertion 6); the edit
effects of ``--edit-label`` as scored by the teacher (assertion 7). ``assertion_numbers`` picks
the spec's synthetic-assertion numbers out of the results.

Single process (post-processing; no DDP): on ``--device`` (default CUDA when available).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from datamodules.synthetic.face_factors import RENDERED_ATTRIBUTES
from experiments.analysis_output import analysis_device, jsonable
from experiments.metrics_csv import epoch_series, last_value
from experiments.olr import sections
from experiments.olr.curves import CURVES, training_curves
from experiments.stage_runs import StageRun, find_stage_run
from lightning_modules.olr.embedding_writer import load_embeddings

__all__ = ["AnalysisOptions", "assertion_numbers", "main", "run_analysis"]

FIG7_EDITS = (
    "+Mouth_Slightly_Open",
    "+Big_Lips",
    "+Big_Nose",
    "+Chubby",
    "+Narrow_Eyes",
    "-Eyeglasses",
    "-Attractive",
)
STAGES = ("teacher", "siamese", "probe", "decoder")


@dataclass
class AnalysisOptions:
    """The options of one analysis (the command-line flags of the same names).

    Attributes:
        root: Run root holding the stage runs (``--run.root`` of the stages).
        out: Output folder; None = ``<root>/analysis``.
        teacher: Run name of the teacher stage.
        siamese: Run name of the Siamese stage (its embeddings, data config and pairs).
        probe: Run name of the linear-probe stage.
        decoder: Run name of the decoder stage.
        independent: Two labels drawn independently in the data (assertion 4's |r|); the
            default pair is drawn independently by the twin and frequent enough that both slots
            learn their label at CPU scale (a slot that did not learn its rare label carries
            nuisance variation shared with other such slots).
        pca_label: Label of the PCA (Fig. 5, assertion 5).
        strip_count: Images in the Fig. 5 strip.
        edit_label: Label added and removed for assertion 7.
        edit_count: At most this many test negatives (and positives) are edited.
        other_labels: Labels an edit should leave alone; default the twin's rendered labels.
        panel_rows: Rows of the editing panels of ``edit_label``.
        fig7_edits: Edits of Fig. 7, "+Label" or "-Label".
        fig8_labels: Labels added at s = 1 and s = 1.5 in Fig. 8.
        pair_index: Held-out pair of Fig. 2.
        fig3_count: Images in Fig. 3.
        recon_count: Test images in Fig. 6 (3 per row).
        seed: Seed of every random choice.
        batch_size: Images per batch.
        num_workers: Loader workers; None = the Siamese run's.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        progress: Show progress bars.
    """

    root: Path
    out: Path | None = None
    teacher: str = "olr/synthetic_teacher"
    siamese: str = "olr/synthetic_siamese"
    probe: str = "olr/synthetic_probe"
    decoder: str = "olr/synthetic_decoder"
    independent: tuple[str, str] = ("Smiling", "Black_Hair")
    pca_label: str = "Mouth_Slightly_Open"
    strip_count: int = 10
    edit_label: str = "Eyeglasses"
    edit_count: int = 200
    other_labels: list[str] | None = None
    panel_rows: int = 6
    fig7_edits: list[str] = field(default_factory=lambda: list(FIG7_EDITS))
    fig8_labels: list[str] = field(default_factory=lambda: ["Chubby", "Narrow_Eyes"])
    pair_index: int = 0
    fig3_count: int = 12
    recon_count: int = 12
    seed: int = 0
    batch_size: int = 256
    num_workers: int | None = None
    device: str = "auto"
    progress: bool = True


def _load(run: StageRun) -> Any:
    """The run's module; one that started from a pretrained file (``weights_file``) is rebuilt
    without reading that file again (``random_init``): the checkpoint holds every weight."""
    _, init_args = run.section("model")
    if init_args.get("weights_file") and "random_init" in init_args:
        return run.load_module(random_init=True)
    return run.load_module()


def _embeddings(run: StageRun, split: str, names: Sequence[str]) -> dict[str, Any]:
    path = run.run_dir / f"embeddings_{split}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the Siamese run writes it when it predicts after fit (`make "
            f"experiment NAME={run.name}` runs fit, test and predict)"
        )
    saved = load_embeddings(path)
    if "attributes" not in saved:
        raise ValueError(f"{path} holds no labels (attributes): predict with labelled images")
    if saved.get("label_names") and list(saved["label_names"]) != list(names):
        raise ValueError(f"{path} has other label names than the data: {saved['label_names']}")
    return saved


def _check_ids(saved: dict[str, Any], loader: Any, path: str) -> None:
    ids = getattr(loader.dataset, "names", None)
    if ids is None:
        raise ValueError(f"the {path} loader's dataset has no image names to match the rows")
    if len(saved["image_id"]) != len(ids):
        raise ValueError(
            f"embeddings_{path}.pt holds {len(saved['image_id'])} rows but the data's {path} "
            f"split {len(ids)} images: the Siamese run predicted part of it (was "
            "--trainer.limit_predict_batches set?) or its data changed since"
        )
    if list(saved["image_id"]) != list(ids):
        raise ValueError(
            f"embeddings_{path}.pt rows are not the data's {path} images in file order: was the "
            "Siamese run's data changed after it ran?"
        )


def run_analysis(options: AnalysisOptions) -> dict[str, Any]:
    """Run every part of the analysis, write the figures, ``analysis.json`` and ``analysis.md``.

    Returns the results (as written to ``analysis.json``).
    """
    root = Path(options.root)
    runs = {stage: find_stage_run(root, getattr(options, stage), f"--{stage}") for stage in STAGES}
    out_dir = Path(options.out) if options.out else root / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    device = analysis_device(options.device)
    overrides: dict[str, Any] = {"pairs": True, "predict_splits": ["train", "test"]}
    overrides["batch_size"] = options.batch_size
    if options.num_workers is not None:
        overrides["num_workers"] = options.num_workers
    data = runs["siamese"].datamodule(**overrides)
    data.prepare_data()
    data.setup("predict")
    train_loader, test_loader = data.predict_dataloader()
    names = list(data.attribute_names)
    saved = {s: _embeddings(runs["siamese"], s, names) for s in ("train", "test")}
    _check_ids(saved["train"], train_loader, "train")
    _check_ids(saved["test"], test_loader, "test")
    inputs = sections.Inputs(
        names=names,
        train_loader=train_loader,
        test_loader=test_loader,
        train_embeddings=saved["train"]["embeddings"].float(),
        test_embeddings=saved["test"]["embeddings"].float(),
        train_labels=saved["train"]["attributes"].round().long(),
        test_labels=saved["test"]["attributes"].round().long(),
        out_dir=out_dir,
        device=device,
        seed=options.seed,
        progress=options.progress,
    )
    if options.other_labels is None:
        options = replace(options, other_labels=[n for n in RENDERED_ATTRIBUTES if n in names])
    modules = {stage: _load(runs[stage]).to(device) for stage in STAGES}
    results: dict[str, Any] = {"runs": {s: runs[s].describe() for s in STAGES}}
    results["classification"] = sections.classification(
        inputs, modules["teacher"], modules["probe"], options.fig3_count
    )
    results["norm_correlation"] = sections.norm_correlations(inputs, options.independent)
    results["pca"] = sections.pca_of_label(inputs, options.pca_label, options.strip_count)
    recon = sections.reconstruction(inputs, modules["decoder"], options.recon_count)
    train_e, test_e = recon.pop("_train_embeddings"), recon.pop("_test_embeddings")
    results["reconstruction"] = recon
    results["editing"] = sections.editing(
        inputs, modules["decoder"], modules["teacher"], train_e, test_e, options
    )
    results["occluded_pair"] = sections.occluded_pair(
        inputs, modules["siamese"], data.test_dataloader().dataset, options.pair_index
    )
    results["training"] = _training(runs, out_dir)
    results["data"] = _data_summary(inputs)
    results["options"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
    }
    results["notes"] = inputs.notes
    results["assertions"] = assertion_numbers(results)
    results = jsonable(results)
    (out_dir / "analysis.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    (out_dir / "analysis.md").write_text(markdown(results))
    return results


def _training(runs: dict[str, StageRun], out_dir: Path) -> dict[str, Any]:
    """The training-curves figure and the Siamese held-out loss ratio (assertion 1)."""
    panels = {
        title: {key: epoch_series(runs[stage].run_dir / "metrics.csv", key) for key in keys}
        for stage, (title, keys) in CURVES.items()
    }
    training_curves(panels).save(out_dir / "training_curves.png")
    metrics = runs["siamese"].run_dir / "metrics.csv"
    ratio = last_value(metrics, "test/loss_ratio")
    return {
        "pair_loss_ratio": ratio if math.isfinite(ratio) else last_value(metrics, "val/loss_ratio"),
        "pair_loss_ratio_split": "test" if math.isfinite(ratio) else "val",
        "figures": {"curves": "training_curves.png"},
    }


def _data_summary(inputs: sections.Inputs) -> dict[str, Any]:
    """Split sizes, embedding shape, mean active labels and the compression ratio."""
    labels = torch.cat([inputs.train_labels, inputs.test_labels]).double()
    active = labels.sum(1).mean().item()
    side = int(next(iter(inputs.test_loader))["image"].shape[-1])
    k = int(inputs.test_embeddings.shape[-1])
    return {
        "train_images": len(inputs.train_embeddings),
        "test_images": len(inputs.test_embeddings),
        "embedding_shape": list(inputs.test_embeddings.shape[1:]),
        "image_size": side,
        "mean_active_labels": active,
        "compression_ratio": side * side * 3 / (active * k) if active > 0 else math.nan,
    }


def _mean_over(values: dict[str, float | None], names: Sequence[str]) -> float:
    picked = [values[n] for n in names if values.get(n) is not None]
    picked = [v for v in picked if not math.isnan(v)]
    return sum(picked) / len(picked) if picked else math.nan


def assertion_numbers(results: dict[str, Any]) -> dict[str, float]:
    """The numbers of the spec's synthetic assertions 2-7 from ``run_analysis``'s results.

    Rendered / unrendered labels are the synthetic twin's (``RENDERED_ATTRIBUTES``). Keys:
    ``pair_loss_ratio`` (1: the Siamese run's held-out loss over the constant-target loss,
    test split, else val); ``norm_auroc_rendered_min``, ``norm_auroc_unrendered_min`` and
    ``norm_auroc_unrendered_max`` (2);
    ``probe_rendered``, ``majority_rendered``, ``teacher_rendered``, ``probe_unrendered``,
    ``majority_unrendered`` (3, mean label accuracy over the group); ``r_lipstick_makeup``,
    ``r_male_makeup``, ``abs_r_independent`` (4); ``pca_pc1_auroc`` (5); ``ssim``,
    ``ssim_mean_image``, ``mse``, ``mse_mean_image`` (6); ``add_raised_fraction``,
    ``remove_dropped_fraction``, ``other_labels_mean_abs_delta`` (7).
    """
    c = results["classification"]
    names = list(c["norm_auroc"])
    rendered = [n for n in names if n in RENDERED_ATTRIBUTES]
    unrendered = [n for n in names if n not in RENDERED_ATTRIBUTES]

    def finite(values: dict[str, Any], group: list[str]) -> list[float]:
        found = [values.get(n) for n in group]
        return [v for v in found if v is not None and not math.isnan(v)]

    auroc_r, auroc_u = finite(c["norm_auroc"], rendered), finite(c["norm_auroc"], unrendered)
    acc = c["per_label_accuracy"]
    nc, recon, edit = results["norm_correlation"], results["reconstruction"], results["editing"]
    return {
        "pair_loss_ratio": results["training"]["pair_loss_ratio"],
        "norm_auroc_rendered_min": min(auroc_r, default=math.nan),
        "norm_auroc_unrendered_min": min(auroc_u, default=math.nan),
        "norm_auroc_unrendered_max": max(auroc_u, default=math.nan),
        "probe_rendered": _mean_over(acc["probe"], rendered),
        "majority_rendered": _mean_over(acc["majority"], rendered),
        "teacher_rendered": _mean_over(acc["teacher"], rendered),
        "probe_unrendered": _mean_over(acc["probe"], unrendered),
        "majority_unrendered": _mean_over(acc["majority"], unrendered),
        "r_lipstick_makeup": nc["r_lipstick_makeup"],
        "r_male_makeup": nc["r_male_makeup"],
        "abs_r_independent": nc["abs_r_independent"],
        "pca_pc1_auroc": results["pca"]["pc1_auroc"],
        "ssim": recon["ssim"],
        "ssim_mean_image": recon["mean_image"]["ssim"],
        "mse": recon["mse"],
        "mse_mean_image": recon["mean_image"]["mse"],
        "add_raised_fraction": edit["add_raised_fraction"],
        "remove_dropped_fraction": edit["remove_dropped_fraction"],
        "other_labels_mean_abs_delta": edit["other_labels_mean_abs_delta"],
    }


def _f(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The headline numbers of ``results`` as a short Markdown report."""
    c, nc, pca = results["classification"], results["norm_correlation"], results["pca"]
    recon, edit, pair = results["reconstruction"], results["editing"], results["occluded_pair"]
    acc, auroc = c["label_accuracy"], c["auroc_macro"]
    lines = [
        "# OLR analysis",
        "",
        "| Test split | Label accuracy | Macro AUROC |",
        "|---|---|---|",
        f"| Linear probe P | {_f(acc['probe'])} | {_f(auroc['probe'])} |",
        f"| Teacher C | {_f(acc['teacher'])} | {_f(auroc['teacher'])} |",
        f"| Train-majority baseline | {_f(acc['majority'])} | - |",
        "",
        "Paper (real CelebA): P 0.916, C 0.942.",
        "",
        "| Quantity | Value |",
        "|---|---|",
        f"| r(Wearing_Lipstick, Heavy_Makeup) | {_f(nc['r_lipstick_makeup'], 3)} |",
        f"| r(Male, Heavy_Makeup) | {_f(nc['r_male_makeup'], 3)} |",
        f"| abs r({', '.join(nc['independent_pair'])}) | {_f(nc['abs_r_independent'], 3)} |",
        f"| PCA {pca['label']}: PC1 / PC2 ratio | {_f(pca['pc1_ratio'], 3)} / "
        f"{_f(pca['pc2_ratio'], 3)} |",
        f"| PCA {pca['label']}: PC1 AUROC | {_f(pca['pc1_auroc'], 3)} |",
        f"| Reconstruction SSIM / PSNR / MSE | {_f(recon['ssim'])} / {_f(recon['psnr'], 2)} / "
        f"{_f(recon['mse'])} |",
        f"| Mean train image SSIM / PSNR / MSE | {_f(recon['mean_image']['ssim'])} / "
        f"{_f(recon['mean_image']['psnr'], 2)} / {_f(recon['mean_image']['mse'])} |",
        f"| +{edit['label']} raises C on negatives (s = 1 / 1.5) | "
        f"{_f(edit['add_raised_fraction'], 3)} / {_f(edit['add_emphasised_raised_fraction'], 3)} |",
        f"| -{edit['label']} lowers C on positives | {_f(edit['remove_dropped_fraction'], 3)} |",
        f"| Mean abs change of C on the other labels | "
        f"{_f(edit['other_labels_mean_abs_delta'], 3)} |",
        f"| Share of C's {edit['label']} gap (positives / negatives reconstructed) carried by "
        f"its own row | {_f(edit['row_share']['share'], 3)} |",
        f"| Held-out pair {pair['index']}: pair loss | {_f(pair['pair_loss'])} |",
        f"| Siamese held-out loss / constant-target loss | "
        f"{_f(results['training']['pair_loss_ratio'], 3)} |",
        "",
        "Checkpoints: "
        + "; ".join(f"{s}: {r['checkpoint']} ({r['which']})" for s, r in results["runs"].items()),
        "",
    ]
    lines += [f"Note: {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> AnalysisOptions:
    """``AnalysisOptions`` from command-line flags."""
    d = AnalysisOptions(root=Path("runs"))
    p = argparse.ArgumentParser(
        prog="python -m experiments.olr.analyze",
        description="OLR analyses and editing on finished stage runs (tables and figures).",
    )
    p.add_argument("--root", type=Path, required=True, help="run root of the stage runs")
    p.add_argument("--out", type=Path, default=None, help="output folder (default ROOT/analysis)")
    for stage in STAGES:
        p.add_argument(f"--{stage}", default=getattr(d, stage), help=f"run name of the {stage}")
    p.add_argument("--independent", nargs=2, default=list(d.independent), metavar="LABEL")
    p.add_argument("--pca-label", default=d.pca_label)
    p.add_argument("--strip-count", type=int, default=d.strip_count)
    p.add_argument("--edit-label", default=d.edit_label)
    p.add_argument("--edit-count", type=int, default=d.edit_count)
    p.add_argument("--other-labels", nargs="+", default=None, metavar="LABEL")
    p.add_argument("--panel-rows", type=int, default=d.panel_rows)
    p.add_argument("--fig7-edits", nargs="+", default=d.fig7_edits, metavar="+LABEL|-LABEL")
    p.add_argument("--fig8-labels", nargs="+", default=d.fig8_labels, metavar="LABEL")
    p.add_argument("--pair-index", type=int, default=d.pair_index)
    p.add_argument("--fig3-count", type=int, default=d.fig3_count)
    p.add_argument("--recon-count", type=int, default=d.recon_count)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = vars(p.parse_args(argv))
    args["independent"] = tuple(args["independent"])
    return AnalysisOptions(**args)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    options = parse_args(argv)
    try:
        results = run_analysis(options)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(options.out) if options.out else Path(options.root) / "analysis"
    print(markdown(results))
    print(f"Wrote {out / 'analysis.json'}, {out / 'analysis.md'} and the figures.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
