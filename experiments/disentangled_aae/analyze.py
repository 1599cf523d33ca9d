"""The disentangled AAE's evaluations and figures on finished stage runs: the pipeline's last step.

    python -m experiments.disentangled_aae.analyze --root <pipeline folder>

reads the newest finished runs of the three stages under ``--root`` (``<root>/<name>/<timestamp>/``;
names from ``--ae``, ``--disentangle``, ``--joint``, default ``disentangled_aae/synthetic_*``),
each module loaded with its class's ``load_from_checkpoint`` from the run's best checkpoint (else
``last.ckpt``), the data rebuilt from the ``data`` section of the Stage A run's ``config.yaml``
(unmirrored), and writes into ``<root>/analysis/`` (``--out``):

- ``analysis.json``: every number below, the runs and checkpoints used, the options, notes;
- ``analysis.md``: the tables in the paper's layouts, the paper's numbers beside ours as
  references only, every [SUBST] labelled;
- ``fig3_reconstructions.png`` (test images and each stage's reconstructions), ``samples.png``
  (G(z*), one draw for every stage), ``fig4_retrieval_<stage>.png`` (two queries, top 7 per
  sub-vector), ``fig5_transfer_<stage>.png`` (the 8-row attribute-transfer panel per source /
  target pair), ``probe_matrix_<stage>.png`` (what each sub-vector predicts), for the
  ``disentangle`` (B) and ``joint`` (C) runs; ``interpolations.png`` (G along straight lines
  between two test codes z, Stages A and C), ``fig6_expression_<stage>.png`` (test images and
  their decodings under the proxy class and the f_e probe's prediction, framed green or red).

Numbers (spec ``disentangle`` section 6): Table 1, test RMSE on the 0-255 scale of each stage's
G(E(x)) (and from B on G(Phi^-1(Phi(E(x))))) beside the mean train image's, FID from each run's
``metrics.csv`` (``test/fid``) else n/a; Table 2, verification accuracy per block (f_p, f_e, f_s,
f_-id, f_id), threshold fitted on val pairs, 500 + 500 test pairs (fewer when the split lacks
them, with the count); Table 3, the expression probe's one-vs-rest AUC per proxy class and macro
for f_p, f_id, f_s, f_-e, f_e; pose MAE of f_p in degrees; identity precision@7 per sub-vector;
ridge R^2 of the pose per sub-vector (the probe matrix). Substitutions ([SUBST]): poses fitted
from the landmarks, verification pairs from CelebA identities instead of LFW, proxy expression
classes from two CelebA attributes instead of AffectNet.

Single process (post-processing; no DDP): on ``--device`` (default CUDA when available).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch

from datamodules.expression_proxy import EXPRESSION_CLASSES
from experiments.analysis_output import analysis_device
from experiments.disentangled_aae import sections
from experiments.disentangled_aae.report import markdown
from experiments.metrics_csv import last_value
from experiments.stage_runs import StageRun, find_stage_run

__all__ = ["STAGES", "AnalysisOptions", "main", "parse_args", "run_analysis"]

STAGES = ("ae", "disentangle", "joint")
FACTOR_STAGES = ("disentangle", "joint")


@dataclass
class AnalysisOptions:
    """The options of one analysis (the command-line flags of the same names).

    Attributes:
        root: Run root holding the stage runs (``--run.root`` of the stages).
        ae: Run name of Stage A (the autoencoder; its data config is the analysis's data).
        disentangle: Run name of Stage B.
        joint: Run name of Stage C.
        out: Output folder; None = ``<root>/analysis``.
        pairs: Same and different test pairs each (500); as many val pairs fit the threshold.
        k: Neighbours shown and scored in retrieval (7).
        train_images: Training images the probes train on, drawn at random (None = all).
        retrieval_queries: Queries in Fig. 4 (2).
        transfer_pairs: Source / target pairs (columns) in Fig. 5.
        recon_count: Test images in Fig. 3.
        sample_count: Random faces per stage.
        interpolation_pairs: Test pairs interpolated in z (per stage with its own G).
        interpolation_steps: Decoded points per interpolation, both ends included.
        expression_count: Test images in Fig. 6.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        seed: Seed of every random choice (pairs, subsets, probes, images shown).
        batch_size: Images per forward pass.
        num_workers: Loader workers.
        progress: Show progress bars.
    """

    root: Path
    ae: str = "disentangled_aae/synthetic_ae"
    disentangle: str = "disentangled_aae/synthetic_disentangle"
    joint: str = "disentangled_aae/synthetic_joint"
    out: Path | None = None
    pairs: int = 500
    k: int = 7
    train_images: int | None = 20000
    retrieval_queries: int = 2
    transfer_pairs: int = 6
    recon_count: int = 8
    sample_count: int = 8
    interpolation_pairs: int = 3
    interpolation_steps: int = 7
    expression_count: int = 10
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    batch_size: int = 100
    num_workers: int = 0
    progress: bool = True


def _context(options: AnalysisOptions, run: StageRun, out_dir: Path) -> sections.Context:
    """The data of the Stage A run, unmirrored, with the probes' training subset."""
    data = run.datamodule(
        flip_probability=0.0, batch_size=options.batch_size, num_workers=options.num_workers
    )
    data.prepare_data()
    data.setup("test")
    train = data.splits["train"]
    rows = sections.train_subset(
        train, options.train_images, torch.Generator().manual_seed(options.seed)
    )
    splits = {
        "train": sections.restrict(train, rows),
        "val": data.splits["val"],
        "test": data.splits["test"],
    }
    picked = {"train": rows, "val": slice(None), "test": slice(None)}
    full = {"train": train, "val": data.splits["val"], "test": data.splits["test"]}
    return sections.Context(
        splits=splits,
        poses={s: full[s].poses[picked[s]] for s in splits},
        identities={s: full[s].identities[picked[s]] for s in splits},
        attributes={s: full[s].attributes[picked[s]] for s in splits},
        attribute_names=list(data.index.attribute_names),
        out_dir=out_dir,
        device=analysis_device(options.device),
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        seed=options.seed,
        progress=options.progress,
    )


def _fid(run: StageRun) -> float | None:
    """The run's last logged ``test/fid``; None when it logged none."""
    path = run.run_dir / "metrics.csv"
    return sections.number(last_value(path, "test/fid")) if path.is_file() else None


def run_analysis(options: AnalysisOptions) -> dict[str, Any]:
    """All tables and figures of the stage runs under ``options.root``: writes the figures,
    ``analysis.json`` and ``analysis.md`` into ``options.out`` and returns what the JSON holds."""
    runs = {
        stage: find_stage_run(Path(options.root), getattr(options, stage), f"--{stage}")
        for stage in STAGES
    }
    out_dir = Path(options.out or Path(options.root) / "analysis")
    out_dir.mkdir(parents=True, exist_ok=True)
    context = _context(options, runs["ae"], out_dir)
    modules = {stage: runs[stage].load_module().to(context.device) for stage in STAGES}
    results: dict[str, Any] = {"runs": {s: runs[s].describe() for s in STAGES}}
    table1 = sections.reconstruction_table(context, modules)
    for stage in STAGES:
        table1[stage]["fid"] = _fid(runs[stage])
    results["table1"] = table1
    figures = {
        "fig3": sections.reconstruction_figure(context, modules, options.recon_count),
        # Stage B keeps Stage A's G: its random faces are A's
        "samples": sections.samples_figure(
            context, {s: modules[s] for s in ("ae", "joint")}, options.sample_count
        ),
        "interpolations": sections.interpolation_figure(
            context,
            {s: modules[s] for s in ("ae", "joint")},
            options.interpolation_pairs,
            options.interpolation_steps,
        ),
    }
    pairs = sections.verification_pairs_of(context, options.pairs)
    keys = ("table2", "table3", "pose_mae_deg", "pose_r2", "retrieval", "transfer", "fig6")
    for key in keys:
        results[key] = {}
    for stage in FACTOR_STAGES:
        module = modules[stage]
        codes = sections.encode(context, module, stage)
        split = module.split
        results["table2"][stage] = sections.verification_table(context, codes, split, pairs)
        results["table3"][stage] = sections.expression_table(context, codes, split)
        f_e_predicted = results["table3"][stage].pop("f_e_predicted")
        results["pose_mae_deg"][stage] = sections.pose_error(context, codes, split)
        results["pose_r2"][stage] = sections.pose_r2(context, codes, split)
        found = sections.retrieval(
            context, codes, split, stage, options.k, options.retrieval_queries
        )
        figures[f"fig4_{stage}"] = found.pop("figure")
        results["retrieval"][stage] = found
        transfer = sections.transfer_figure(context, module, stage, options.transfer_pairs)
        figures[f"fig5_{stage}"] = transfer.pop("figure")
        results["transfer"][stage] = transfer
        expression = sections.expression_figure(
            context, module, f_e_predicted, stage, options.expression_count
        )
        figures[f"fig6_{stage}"] = expression.pop("figure")
        results["fig6"][stage] = expression
        figures[f"probe_matrix_{stage}"] = sections.probe_matrix_figure(
            context,
            stage,
            results["pose_r2"][stage],
            results["table2"][stage],
            results["table3"][stage],
        )
    results["figures"] = figures
    results["data"] = {
        "images": {split: len(dataset) for split, dataset in context.splits.items()},
        "expression_classes": list(EXPRESSION_CLASSES),
        "data_root": str(runs["ae"].section("data")[1].get("root")),
    }
    results["options"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
    }
    results["notes"] = context.notes
    results["out_dir"] = str(out_dir)
    (out_dir / "analysis.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    (out_dir / "analysis.md").write_text(markdown(results))
    return results


def _count_or_all(value: str) -> int | None:
    return None if value == "all" else int(value)


_FLAGS: dict[str, tuple[Any, str]] = {  # field -> (type, help); other fields: their default's type
    "root": (Path, "run root of the stage runs (required)"),
    "out": (Path, "output folder (default ROOT/analysis)"),
    "ae": (str, "run name of Stage A"),
    "disentangle": (str, "run name of Stage B"),
    "joint": (str, "run name of Stage C"),
    "pairs": (int, "same and different test (and val) pairs each"),
    "train_images": (_count_or_all, "training images the probes train on (a number or 'all')"),
    "k": (int, "retrieval neighbours shown and scored"),
}
_POSITIVE = (
    "pairs",
    "k",
    "retrieval_queries",
    "transfer_pairs",
    "recon_count",
    "sample_count",
    "interpolation_pairs",
    "expression_count",
)


def parse_args(argv: Sequence[str] | None = None) -> AnalysisOptions:
    """``AnalysisOptions`` from command-line flags: one ``--field-name`` per option, and
    ``--no-progress``."""
    defaults = AnalysisOptions(root=Path("runs"))
    parser = argparse.ArgumentParser(
        prog="python -m experiments.disentangled_aae.analyze",
        description="Disentangled AAE evaluations (Tables 1-3, pose, retrieval) and figures.",
    )
    for item in fields(AnalysisOptions):
        default = getattr(defaults, item.name)
        if item.name == "progress":
            parser.add_argument("--no-progress", dest="progress", action="store_false")
            continue
        kind, text = _FLAGS.get(item.name, (type(default), None))
        choices = ("auto", "cpu", "cuda") if item.name == "device" else None
        parser.add_argument(
            f"--{item.name.replace('_', '-')}",
            dest=item.name,
            type=kind,
            default=default,
            required=item.name == "root",
            choices=choices,
            help=text,
        )
    options = AnalysisOptions(**vars(parser.parse_args(argv)))
    for name in _POSITIVE:
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(options, name)}")
    if options.interpolation_steps < 2:
        parser.error(f"--interpolation-steps must be >= 2, got {options.interpolation_steps}")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2: runs or options refused)."""
    try:
        results = run_analysis(parse_args(argv))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(results))
    print(f"Wrote analysis.json, analysis.md and the figures into {results['out_dir']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
