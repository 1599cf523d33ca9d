"""ISTRC's uses and evaluation on finished stage runs: the last step of the ISTRC pipeline.

    python -m experiments.istrc.analyze --root runs/istrc/synthetic/<timestamp>

reads the newest run of each stage under ``--root`` (``<root>/<name>/<timestamp>/``; names from
``--encoder``, ``--began``, ``--cache``, ``--mapping``, ``--classifiers``,
``--classifiers-shuffled``, ``--judge``, default ``istrc/synthetic_*``; see
``experiments.istrc.stages``) and writes into ``<root>/analysis/`` (``--out``):

- the spec's figures 1-6 (``experiments.istrc.figures``): ``fig1_edit_strips.png``,
  ``fig2_circle.png``, ``fig2_interpolation.png``, ``fig2_noise_grid.png``,
  ``fig3_averages.png``, ``fig3_raw_mean_norm.png``, ``fig4_arithmetic.png``,
  ``fig5_confounds.png``, ``fig6_curves.png``;
- ``evaluation.csv``: one row per quantity (``quantity, value, control, note``;
  ``experiments.istrc.report``): the encoder's verification, the BEGAN's L1s, M_global and k_t
  (from the runs' ``metrics.csv``, ``experiments.istrc.logged``), F's R^2 and C_a's AUROC
  (recomputed on the cached test split beside the logged values), the circle (SSIM, a Fréchet
  distance, identity retention and rank-1 retrieval) and the edits of ``--edit-attributes``
  (``experiments.istrc.evaluation``), each beside its control: an untrained mapping F for the
  circle, the label-shuffled classifiers for C_a and the edits;
- ``analysis.json`` (every number, the runs, the options, notes, ``assertions``) and
  ``analysis.md`` (the table).

``assertion_numbers`` picks the spec's synthetic-assertion numbers out of the results. Single
process, on ``--device`` (default CUDA when available).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from datamodules.synthetic.face_factors import RENDERED_ATTRIBUTES
from experiments.analysis_output import analysis_device, jsonable
from experiments.istrc import evaluation, figures, logged
from experiments.istrc.controls import untrained_mapping
from experiments.istrc.frechet import choose_feature_space
from experiments.istrc.report import assertion_numbers, evaluation_rows, markdown, write_csv
from experiments.istrc.stages import (
    CACHE,
    MODEL_STAGES,
    Circle,
    find_runs,
    load_judge,
    load_test_set,
)
from experiments.metrics_csv import last_value, step_series
from lightning_modules.components.pretrained import WeightsNotFoundError

__all__ = ["AnalysisOptions", "assertion_numbers", "main", "run_analysis"]

STAGES = (*MODEL_STAGES, CACHE)


@dataclass
class AnalysisOptions:
    """The options of one analysis (the command-line flags of the same names).

    Attributes:
        root: The pipeline folder holding the stage runs.
        out: Output folder; None = ``<root>/analysis``.
        encoder, began, cache, mapping, classifiers, classifiers_shuffled, judge: Run names.
        edit_attributes: Attributes edited for the edit scores (assertion 6: Male, Big_Nose);
            each needs a classifier, a judge column and a cached label.
        edit_count: At most this many test inputs edited per attribute.
        other_attributes: The judge's attributes whose |delta p| is averaged; default the
            twin's rendered ones.
        steps: Iterations of each edit (500).
        every: Snapshot interval of the figures' strips (50).
        step_distance: d (0.002).
        fid_features: ``auto`` (Inception when its weights are on disk, else the judge's
            features), ``inception`` or ``judge``.
        judge_thresholds: ``tuned`` (the judge run's thresholds.json, else 0.5) or ``half``.
        seed: Seed of every random choice and of the untrained mapping.
        batch_size: Images per batch when reading the test split.
        data_root: The image folder of the cache run's data (its ``root``), when not where its
            config.yaml says (a relative root is read from the working directory).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        progress: Show progress bars.
    """

    root: Path
    out: Path | None = None
    encoder: str = "istrc/synthetic_encoder"
    began: str = "istrc/synthetic_began"
    cache: str = "istrc/synthetic_cache"
    mapping: str = "istrc/synthetic_mapping"
    classifiers: str = "istrc/synthetic_classifiers"
    classifiers_shuffled: str = "istrc/synthetic_classifiers_shuffled"
    judge: str = "istrc/synthetic_judge"
    edit_attributes: list[str] = field(default_factory=lambda: ["Male", "Big_Nose"])
    edit_count: int = 200
    other_attributes: list[str] | None = None
    steps: int = 500
    every: int = 50
    step_distance: float = 0.002
    fid_features: str = "auto"
    judge_thresholds: str = "tuned"
    seed: int = 0
    batch_size: int = 256
    data_root: Path | None = None
    device: str = "auto"
    progress: bool = True


def _check_edit_attributes(options: AnalysisOptions, classifiers: Any, judge: Any, test) -> None:
    for name in options.edit_attributes:
        where = [
            what
            for what, names in (
                ("the classifiers", classifiers.attributes),
                ("the judge", judge.names),
                ("the cache's labels", test.names),
            )
            if name not in names
        ]
        if where:
            raise ValueError(f"--edit-attributes {name}: not known to {' and '.join(where)}")


def _inception(space: str, device: torch.device) -> torch.nn.Module | None:
    if space != "inception":
        return None
    from lightning_modules.components.inception import FIDInceptionV3

    return FIDInceptionV3().to(device)


def run_analysis(options: AnalysisOptions) -> dict[str, Any]:
    """Run every part of the analysis, write the figures, ``evaluation.csv``, ``analysis.json``
    and ``analysis.md``. Returns the results (as written to ``analysis.json``)."""
    root = Path(options.root)
    settings = evaluation.EditSettings(
        options.steps, options.every, options.step_distance, options.edit_count
    )
    if options.steps % options.every:
        raise ValueError(f"--every {options.every} must divide --steps {options.steps}")
    runs = find_runs(root, {stage: getattr(options, stage) for stage in STAGES})
    out_dir = Path(options.out) if options.out else root / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    device = analysis_device(options.device)
    space, fid_note = choose_feature_space(options.fid_features)
    test = load_test_set(runs[CACHE], options.batch_size, options.progress, options.data_root)
    modules = {stage: runs[stage].load_module() for stage in MODEL_STAGES}
    encoder = modules["encoder"].encoder.to(device).eval()
    began, mapping = modules["began"].to(device), modules["mapping"].to(device)
    classifiers = modules["classifiers"].to(device)
    shuffled = modules["classifiers_shuffled"].to(device)
    judge = load_judge(runs["judge"], modules["judge"], device, options.judge_thresholds)
    _check_edit_attributes(options, classifiers, judge, test)
    control = untrained_mapping(mapping.hparams, options.seed).to(device)
    decoder = began.discriminator.decoder
    trained_circle = Circle(mapping, decoder, device)
    control_circle = Circle(control, decoder, device)
    ctx = evaluation.Context(
        test=test,
        encoder=encoder,
        judge=judge,
        mean_image=began.mean_image.detach().cpu(),
        device=device,
        seed=options.seed,
        progress=options.progress,
        inception=_inception(space, device),
        judged=list(options.edit_attributes),
    )
    if int(began.mean_image_count) == 0:
        raise ValueError(f"{runs['began'].checkpoint} holds no mean train image")
    others = options.other_attributes
    if others is None:
        others = [n for n in RENDERED_ATTRIBUTES if n in judge.names]
    results: dict[str, Any] = {
        "runs": {s: runs[s].describe() for s in MODEL_STAGES}
        | {CACHE: {"run_dir": str(runs[CACHE])}},
        "fid_note": fid_note,
        "judge_thresholds": judge.threshold_source,
    }
    results["circle"] = {
        "trained": evaluation.circle(ctx, trained_circle),
        "untrained_mapping": evaluation.circle(ctx, control_circle),
    }
    x_hat = results["circle"]["trained"].pop("_x_hat")
    results["circle"]["untrained_mapping"].pop("_x_hat")
    results["verification"] = _verification(runs, test, results["circle"])
    began_metrics = runs["began"].run_dir / "metrics.csv"
    results["began"] = logged.began_numbers(began_metrics)
    results["mapping"] = _mapping(runs, mapping, control, test, device)
    results["classifiers"] = _classifiers(runs, classifiers, shuffled, test, device)
    undefined = [n for n, v in results["classifiers"]["trained"].items() if math.isnan(v)]
    if undefined:
        ctx.notes.append(f"C_a AUROC undefined (one class in the test split): {undefined}")
    sets = {"trained": classifiers, "shuffled": shuffled}
    results["edits"] = {
        "attributes": evaluation.edits(
            ctx, trained_circle, sets, options.edit_attributes, settings, others
        ),
        "settings": asdict(settings),
        "other_attributes": list(others),
    }
    results["figures"], results["uses"] = _figures(
        ctx, trained_circle, classifiers, settings, x_hat, began_metrics, out_dir
    )
    results["options"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
    }
    results["notes"] = ctx.notes
    results["assertions"] = assertion_numbers(results)
    results = jsonable(results)
    (out_dir / "analysis.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    write_csv(evaluation_rows(results), out_dir / "evaluation.csv")
    (out_dir / "analysis.md").write_text(markdown(results))
    return results


def _verification(runs, test, circle: dict[str, Any]) -> dict[str, Any]:
    numbers = logged.verification_numbers(runs["encoder"].run_dir / "metrics.csv")
    errors = [*test.norm_errors.values()]
    errors += [c["encoder_norm_error"] for c in circle.values()]
    return numbers | {"max_norm_error": max(errors), "cache_norm_errors": test.norm_errors}


def _mapping(runs, mapping, control, test, device) -> dict[str, Any]:
    scores = evaluation.mapping_r2(mapping, test, device)
    control_scores = evaluation.mapping_r2(control, test, device)
    return {
        "logged_r2": last_value(runs["mapping"].run_dir / "metrics.csv", "test/r2"),
        "r2": scores["r2"],
        "mse": scores["mse"],
        "control_r2": control_scores["r2"],
        "control_mse": control_scores["mse"],
    }


def _classifiers(runs, classifiers, shuffled, test, device) -> dict[str, Any]:
    result: dict[str, Any] = {"logged": {}}
    gaps = []
    for key, module, stage in (
        ("trained", classifiers, "classifiers"),
        ("shuffled", shuffled, "classifiers_shuffled"),
    ):
        result[key] = evaluation.classifier_aurocs(module, test, device)
        metrics = runs[stage].run_dir / "metrics.csv"
        result["logged"][key] = logged.classifier_aurocs(metrics, list(module.attributes))
        gaps += [
            abs(value - result["logged"][key][name])
            for name, value in result[key].items()
            if value is not None and not math.isnan(value)
        ]
    result["max_logged_gap"] = max(gaps, default=math.nan)
    return result


def _figures(
    ctx: evaluation.Context,
    circle: Circle,
    classifiers: Any,
    settings: evaluation.EditSettings,
    x_hat: Tensor,
    began_metrics: Path,
    out_dir: Path,
) -> tuple[list[str], dict[str, Any]]:
    """Figures 1-6: their file names and what they show (persons, sets, the numbers drawn)."""
    fig1, strips = figures.edit_strips(ctx, circle, classifiers, settings, out_dir)
    fig2 = figures.circle_figures(ctx, circle, x_hat, out_dir)
    fig3 = figures.averages_figures(ctx, circle, out_dir)
    fig4 = figures.arithmetic_figure(ctx, circle, out_dir)
    fig5 = figures.confounds_figure(ctx, circle, classifiers, settings, out_dir)
    curves = {
        "m_global": step_series(began_metrics, "train/m_global_step"),
        "k": step_series(began_metrics, "train/k_step"),
    }
    fig6 = figures.curves_figure(strips, curves, out_dir)
    names = [fig1["figure"], *fig2["figures"].values(), *fig3["figures"].values()]
    names += [fig4["figure"], fig5["figure"], fig6]
    uses = {"edit_strips": fig1, "circle": fig2, "averages": fig3, "arithmetic": fig4}
    return names, uses | {"confounds": fig5}


def parse_args(argv: Sequence[str] | None = None) -> AnalysisOptions:
    """``AnalysisOptions`` from command-line flags."""
    d = AnalysisOptions(root=Path("runs"))
    p = argparse.ArgumentParser(
        prog="python -m experiments.istrc.analyze",
        description="ISTRC's figures and evaluation on the finished stage runs of a pipeline.",
    )
    p.add_argument("--root", type=Path, required=True, help="the pipeline folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default ROOT/analysis)")
    for stage in STAGES:
        flag = stage.replace("_", "-")
        p.add_argument(f"--{flag}", dest=stage, default=getattr(d, stage), help="run name")
    p.add_argument("--edit-attributes", nargs="+", default=d.edit_attributes, metavar="ATTR")
    p.add_argument("--edit-count", type=int, default=d.edit_count)
    p.add_argument("--other-attributes", nargs="+", default=None, metavar="ATTR")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--every", type=int, default=d.every)
    p.add_argument("--step-distance", type=float, default=d.step_distance)
    p.add_argument("--fid-features", default=d.fid_features, choices=["auto", "inception", "judge"])
    p.add_argument("--judge-thresholds", default=d.judge_thresholds, choices=["tuned", "half"])
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--data-root", type=Path, default=None, help="the cache run's image folder")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return AnalysisOptions(**vars(p.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    options = parse_args(argv)
    try:
        results = run_analysis(options)
    except (FileNotFoundError, ValueError, WeightsNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(options.out) if options.out else Path(options.root) / "analysis"
    print(markdown(results))
    print(f"Wrote {out / 'evaluation.csv'}, {out / 'analysis.json'}, {out / 'analysis.md'} and the "
          "figures.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
