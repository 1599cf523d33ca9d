"""UST's evaluation, tables and figures on a finished training run: the UST pipeline's last step.

    python -m experiments.ust.analyze --root runs/ust/synthetic/<timestamp>

reads the newest finished run of ``--full`` (default ``ust/synthetic_full``) under ``--root``
(its last checkpoint; the data from its ``config.yaml``: the test split in file order and, on the
twin, the cross pairs) and, for Table 4.1, the newest run of each ablation under
``--ablation-root`` (default ``--root``; names ``<--prefix>_<variant>``, a variant without a run
is left empty and says which command makes it). Writes into ``<root>/analysis/`` (``--out``):

- ``tables/table_4_<n>.csv`` (``experiments.ust.paper_tables``): the paper's value beside ours
  and the dataset each was measured on;
- ``evaluation.csv``: the spec's synthetic assertions T1-T6 (``experiments.ust.assertions``,
  ``experiments.ust.retrieval_table``) for the trained model and for the same network untrained
  (the control every assertion must fail), one row per number;
- figures: ``tryon.png`` (catalog I_B, context C_A, try-on I_BA, ground truth I_A), ``takeoff.png``
  (person I_A, take-off I_AB, ground truth I_B), ``tryon_matrix.png`` (Fig. 4.9: persons x
  items), ``cross_tryon.png`` (twin: person i, item j, try-on, true try-on),
  ``retrieval.png`` (Fig. 4.11: query, its top 5 by our style codes, the right item framed
  green) and ``retrieval_reranked.png`` (the same after LPIPS-Alex re-ranking);
- ``analysis.json`` (every number, the runs, the options) and ``analysis.md`` (the tables).

LPIPS-Alex (retrieval) reads the manifest's ``alexnet`` file; a model trained with random
perceptual trunks (``random_trunks``: the CPU twin) is analysed with a random AlexNet trunk, and
every LPIPS number is then marked as one that compares with nothing outside the run. Single
process, on ``--device`` (default CUDA when available).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from experiments.analysis_output import (
    analysis_device,
    analysis_parser,
    jsonable,
    options_from,
    print_summary,
)
from experiments.metrics_csv import last_value
from experiments.stage_runs import StageRun, find_stage_run
from experiments.ust import assertions, figures
from experiments.ust.paper_tables import PAPER, QUALITY, TableRow, write_tables
from experiments.ust.retrieval_table import retrieval_results
from experiments.ust.split_images import CROSS_KEYS, TEST_KEYS, load_images, mean_catalog_image
from lightning_modules.components.lpips import LPIPS
from lightning_modules.ust.module import USTModule

__all__ = ["ABLATIONS", "AnalysisOptions", "main", "run_analysis"]

#: Table 4.1's rows: the run-name suffix of each (``<prefix>_<suffix>``), None: not built.
ABLATIONS: dict[str, str | None] = {
    "W/O P. Loss": "no_perceptual",
    "W/O shared S.E.": "no_shared_style",
    "W/O mask attention": "no_mask_attention",
    "W/O Fit-in module": "no_fit_in",
    "Full model": "full",
    "Supervised model": None,
}


@dataclass
class AnalysisOptions:
    """The options of one analysis (the command-line flags of the same names).

    Attributes:
        root: Run root holding the training run (``--run.root`` of the pipeline's stages).
        prefix: Run names are ``<prefix>_full`` and ``<prefix>_<ablation>``.
        ablation_root: Where the ablation runs are looked for; None: ``root``.
        out: Output folder; None: ``<root>/analysis``.
        kappas: Re-ranking depths (the thesis: 5, 20 on FashionStyle, 50 on VITON).
        rows: Examples per figure.
        matrix_persons: Persons (columns) of the Fig. 4.9 matrix; as many items (rows).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        seed: Seed of the shuffles, the control's initialisation and random LPIPS trunks.
        batch_size: Images per forward pass.
        progress: Show progress bars.
    """

    root: Path
    prefix: str = "ust/synthetic"
    ablation_root: Path | None = None
    out: Path | None = None
    kappas: tuple[int, ...] = (5, 20, 50)
    rows: int = 8
    matrix_persons: int = 6
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    batch_size: int = 64
    progress: bool = True


def _untrained(module: USTModule, seed: int) -> USTModule:
    """The control: the same network and options, freshly initialised from ``seed``."""
    torch.manual_seed(seed)
    return USTModule(**dict(module.hparams)).eval()


def _lpips_alex(module: USTModule, seed: int) -> LPIPS:
    random = bool(module.hparams.random_trunks)
    torch.manual_seed(seed)
    return LPIPS("alex", trunk_weights=None if random else "alexnet", random_trunk=random).eval()


def _checks(module, images, cross, mean_catalog, out, found, t, options) -> dict[str, dict]:
    """T1-T6 under the thresholds ``t`` (the translations and retrieval computed once)."""
    checks = {
        "T1": assertions.check_t1(images, out, mean_catalog, t),
        "T2": assertions.check_t2(images, out, t),
        "T3": assertions.check_t3(images, out, t),
        "T4": assertions.check_t4(images, out, t),
    }
    if cross is not None:
        checks["T5"] = assertions.check_t5(module, cross, t, options.seed, options.batch_size)
    recall, chance = found["rows"]["ours"]["recall"], found["chance"]
    checks["T6"] = {
        "recall@1": recall[1],
        "chance@1": chance[1],
        "recall@1_over_chance": recall[1] / chance[1],
        "recall@5": recall[5],
        "rerank_equal_at_k_ge_kappa": found["rerank_equal_at_k_ge_kappa"],
        "threshold_over_chance": t.over_chance,
        "threshold_recall@5": t.recall5,
        "passed": recall[1] >= t.over_chance * chance[1]
        and recall[5] >= t.recall5
        and found["rerank_equal_at_k_ge_kappa"],
    }
    return checks


def _assertions(module, images, cross, mean_catalog, lpips, options) -> dict[str, Any]:
    """T1-T6 of ``module`` under the spec's thresholds and the CPU-calibrated ones
    (``assertions``, ``retrieval_table``), with their numbers."""
    out = assertions.translate(module, images, options.seed, options.batch_size)
    found = retrieval_results(module, images, lpips, options.kappas)
    args = (module, images, cross, mean_catalog, out, found)
    return {
        "checks": _checks(*args, assertions.Thresholds(), options),
        "checks_cpu": _checks(*args, assertions.CPU_CALIBRATED, options),
        "retrieval": found,
        "translations": out,
    }


def _dataset_names(run: StageRun) -> tuple[str, str]:
    """(what ours ran on, the same as a substitute for FashionStyle)."""
    synthetic = run.section("data")[1].get("synthetic") is not None
    name = "VITON twin (synthetic)" if synthetic else "VITON"
    return name, f"{name.replace(' (synthetic)', '')} (substitute)"


def _quality_of(run_dir: Path) -> dict[str, float | None]:
    """A run's logged test Take-off and Try-on ROI SSIM / LPIPS x 100 (None when not logged)."""
    path = run_dir / "metrics.csv"
    values: dict[str, float | None] = {}
    for metric in QUALITY:
        value = last_value(path, f"test/{metric}") if path.is_file() else None
        values[metric] = None if value is None else float(value)
    return values


def _table_rows(
    options: AnalysisOptions, full: StageRun, results: dict[str, Any]
) -> list[TableRow]:
    ours_on, substitute = _dataset_names(full)
    rows: list[TableRow] = []
    ablation_root = Path(options.ablation_root or options.root)
    lpips_note = "LPIPS on a random trunk" if results["random_trunks"] else ""
    for method, suffix in ABLATIONS.items():
        values: dict[str, float | None] = dict.fromkeys(QUALITY)
        note = "not built (the spec leaves the supervised U-Net unspecified)"
        if suffix is not None:
            name = f"{options.prefix}_{suffix}"
            try:
                run = full if suffix == "full" else find_stage_run(ablation_root, name, "--prefix")
                values, note = _quality_of(run.run_dir), lpips_note
                results["table_4_1_runs"][method] = str(run.run_dir)
            except FileNotFoundError:
                note = f"not run: make experiment NAME={name}"
        for metric in QUALITY:
            paper = PAPER["4.1"][method][metric]
            cell_note = "N/A without Fit-in" if paper is None and suffix else note
            suite = values[metric]
            rows.append(TableRow("4.1", method, metric, paper, suite, substitute, cell_note))
    full_values = _quality_of(full.run_dir)
    for method, cells in PAPER["4.2"].items():
        for metric, paper in cells.items():
            suite = full_values[metric] if method == "Ours" else None
            note = lpips_note if method == "Ours" else "baseline not built"
            rows.append(TableRow("4.2", method, metric, paper, suite, substitute, note))
    rows += _retrieval_rows(results, ours_on, substitute)
    for metric, paper in PAPER["4.5"]["Ours (faces)"].items():
        rows.append(
            TableRow("4.5", "Ours (faces)", metric, paper, None, "MultiPIE", "faces not run")
        )
    return rows


def _retrieval_rows(results: dict[str, Any], ours_on: str, substitute: str) -> list[TableRow]:
    """Tables 4.3 and 4.4: ours where our row matches the paper's (style size, kappa)."""
    found = results["retrieval"]
    sd = found["rows"]["ours"]["dim"]
    ours = {
        "4.3": {
            "Color histogram": "colour_histogram",
            "LPIPS-Alex": "lpips_alex",
            f"Ours (SD={sd})": "ours",
            f"LPIPS-Alex + Ours (SD={sd}, kappa=20)": "rerank_k20",
            f"LPIPS-Alex + Ours (SD={sd}, kappa=5)": "rerank_k5",
        },
        "4.4": {
            "Ours (128)" if sd == 128 else f"Ours ({sd})": "ours",
            "LPIPS-Alex (640K)": "lpips_alex",
            "LPIPS-Alex + Ours (kappa=50)": "rerank_k50",
        },
    }
    rows = []
    for table, names in ours.items():
        dataset = substitute if table == "4.3" else ours_on
        methods = list(PAPER[table]) + [m for m in names if m not in PAPER[table]]
        for method in methods:
            key = names.get(method)
            row = found["rows"].get(key) if key else None
            note = "" if row else "not run"
            uses_lpips = key is not None and (key == "lpips_alex" or key.startswith("rerank"))
            if row and uses_lpips and results["random_trunks"]:
                note = "LPIPS-Alex on a random trunk"
            for k in (1, 5, 20, 50):
                metric = f"recall@{k}"
                paper = PAPER[table].get(method, {}).get(metric)
                suite = 100 * row["recall"][k] if row else None
                rows.append(TableRow(table, method, metric, paper, suite, dataset, note))
    return rows


def _evaluation_csv(trained: dict[str, Any], control: dict[str, Any], path: Path) -> None:
    """One row per number of T1-T6; ``passed`` under the spec's and the CPU thresholds."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["assertion", "quantity", "thresholds", "trained", "untrained"])
        for kind, key in (("spec", "checks"), ("cpu", "checks_cpu")):
            for name, numbers in trained[key].items():
                for quantity, value in numbers.items():
                    other = control[key].get(name, {}).get(quantity)
                    writer.writerow([name, quantity, kind, value, other])


def _figures(module, images, cross, found, out_dir: Path, options: AnalysisOptions) -> list[str]:
    out = found["translations"]
    n = options.rows
    written = [
        figures.save_rows(
            [images["image_b"], images["context_a"], out.try_on, images["image_a"]],
            out_dir / "tryon.png",
            n,
        ),
        figures.save_rows(
            [images["image_a"], out.take_off, images["image_b"]], out_dir / "takeoff.png", n
        ),
    ]
    p = min(options.matrix_persons, len(images))
    persons, masks, contexts = (images[k][:p] for k in ("image_a", "mask_a", "context_a"))
    items = images["image_b"][p : 2 * p] if len(images) >= 2 * p else images["image_b"][:p]
    with torch.no_grad():
        tried = torch.stack(
            [
                module.try_on(item.expand(p, -1, -1, -1).to(module.device), masks, contexts).cpu()
                for item in items
            ]
        )
    written.append(figures.save_matrix(persons, items, tried, out_dir / "tryon_matrix.png"))
    if cross is not None:
        with torch.no_grad():
            tried = module.try_on(cross["image_b"][:n], cross["mask_a"][:n], cross["context_a"][:n])
        written.append(
            figures.save_rows(
                [cross["image_a"], cross["image_b"], tried, cross["target"]],
                out_dir / "cross_tryon.png",
                n,
            )
        )
    retrieval, db = found["retrieval"], found["retrieval"]["database"]
    items = images["image_b"][db.rows]
    for name, key in (("retrieval.png", "ours"), ("retrieval_reranked.png", "rerank_k5")):
        order = retrieval["rankings"][key]
        written.append(
            figures.save_retrieval(
                images["masked_a"][:n], items, order[:n], db.correct[:n], out_dir / name
            )
        )
    return [str(path) for path in written]


def run_analysis(options: AnalysisOptions) -> dict[str, Any]:
    """Every number, table and figure of the run under ``options.root`` (see the module doc)."""
    full = find_stage_run(Path(options.root), f"{options.prefix}_full", "--prefix")
    out_dir = Path(options.out or Path(options.root) / "analysis")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = analysis_device(options.device)
    module = full.load_module().to(device)
    data = full.datamodule(num_workers=0)
    data.prepare_data()
    data.setup("test")
    images = load_images(data.splits["test"], TEST_KEYS, options.batch_size, options.progress)
    cross = None
    if data.has_cross_pairs:
        cross = load_images(data.cross, CROSS_KEYS, options.batch_size, options.progress)
    mean_catalog = mean_catalog_image(data.splits["train"].items, options.batch_size)
    lpips = _lpips_alex(module, options.seed).to(device)
    trained = _assertions(module, images, cross, mean_catalog, lpips, options)
    control = _assertions(
        _untrained(module, options.seed).to(device), images, cross, mean_catalog, lpips, options
    )
    results: dict[str, Any] = {
        "run": full.describe(),
        "random_trunks": bool(module.hparams.random_trunks),
        "assertions": trained["checks"],
        "control_untrained": control["checks"],
        "assertions_cpu": trained["checks_cpu"],
        "control_untrained_cpu": control["checks_cpu"],
        "cpu_thresholds": asdict(assertions.CPU_CALIBRATED),
        "retrieval": {k: trained["retrieval"][k] for k in ("rows", "chance", "database_size")},
        "table_4_1_runs": {},
    }
    results["retrieval"]["queries"] = len(images)
    results["retrieval_control"] = control["retrieval"]["rows"]
    tables = write_tables(_table_rows(options, full, results), out_dir / "tables")
    results["tables"] = [str(p) for p in tables]
    _evaluation_csv(trained, control, out_dir / "evaluation.csv")
    results["figures"] = _figures(module, images, cross, trained, out_dir, options)
    results["options"] = {k: str(v) for k, v in asdict(options).items()}
    (out_dir / "analysis.json").write_text(json.dumps(jsonable(results), indent=2))
    (out_dir / "analysis.md").write_text(_markdown(results, tables))
    return results


def _markdown(results: dict[str, Any], tables: list[Path]) -> str:
    lines = ["# UST analysis", "", f"Run: `{results['run']['run_dir']}`", ""]
    if results["random_trunks"]:
        lines += ["LPIPS values come from random trunks: they compare only within this run.", ""]
    lines += [
        "| assertion | passed (spec) | untrained (spec) | passed (CPU) | untrained (CPU) |",
        "|---|---|---|---|---|",
    ]
    for name, check in results["assertions"].items():
        cells = [
            check["passed"],
            results["control_untrained"].get(name, {}).get("passed"),
            results["assertions_cpu"][name]["passed"],
            results["control_untrained_cpu"].get(name, {}).get("passed"),
        ]
        lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    for path in tables:
        lines += ["", f"## {path.stem}", "", "```", path.read_text().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> AnalysisOptions:
    parser = analysis_parser(__doc__, "ust/synthetic", batch_size=64)
    parser.add_argument("--ablation-root", type=Path, default=None)
    parser.add_argument("--kappas", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args(argv)
    return options_from(AnalysisOptions, args, kappas=tuple(args.kappas))


def main(argv: Sequence[str] | None = None) -> int:
    return print_summary(run_analysis(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
