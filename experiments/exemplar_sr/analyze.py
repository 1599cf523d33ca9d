"""The exemplar-SR (PWAVE, thesis ch. 6) evaluation, tables and figures on finished runs.

    python -m experiments.exemplar_sr.analyze --root runs [--prefix exemplar_sr/synthetic]
        [--ablation-root R] [--out D] [--device cpu] [--limit N] [--no-progress]

reads the newest finished run of ``<prefix>_pwave`` (m = 3, required) under ``--root`` and, under
``--root`` (a pipeline's own stages), else under ``--ablation-root``, each optional run of
``runs.OPTIONAL`` that exists
(``_m0`` .. ``_m5``, ``_average``, ``_uniform1to5``, ``_occluded_pwave``, ``_occluded_average``,
``_disc``, ``_x16_pwave``, ``_x16_m0``, ``_x16_disc``); an absent one leaves its rows empty and the
report names the ``make experiment NAME=...`` that makes it. Each model is evaluated on its own
run's test split (``evaluate``) at m = 3, or at its m for an m-ablation. Region numbers (detail
PSNR, the occluded weights, H2's detail term, H4-H6) only where the data has detail regions (the
exemplar twin). Writes into ``<root>/analysis`` (``--out``):

- ``evaluation.csv``: every mean number of every evaluation, and H2-H6 (``assertions``) under the
  spec's and the CPU thresholds, for the trained PWAVE model and for the two controls that must
  fail: its exemplars replaced by another identity's (``exemplar_swaps.ForeignExemplars``) and its
  weights forced to 1/m (``uniform_weights``);
- ``tables/table_6_1.csv``, ``fig_6_8.csv`` and ``fig_6_8.png`` (``paper_tables``);
- ``hallucinations.png``, ``weights.png``, ``fusion_comparison.png`` (with an average-fusion run:
  ``_average`` beside ``_pwave`` on clean exemplars, else ``_occluded_average`` beside
  ``_occluded_pwave`` on occluded ones) and ``editing.png`` (``figures``);
- ``analysis.json`` (every number, the runs, the missing runs, the options) and ``analysis.md``.
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
from torch.utils.data import Subset

from datamodules.formats.celeba import ATTRIBUTE_NAMES
from experiments.analysis_output import (
    analysis_device,
    analysis_parser,
    jsonable,
    options_from,
    print_summary,
)
from experiments.exemplar_sr import assertions, figures
from experiments.exemplar_sr.evaluate import Scores, evaluate
from experiments.exemplar_sr.exemplar_swaps import (
    ForeignExemplars,
    SwappedDetail,
    check_crop,
    read_render_codes,
    twin_seed,
)
from experiments.exemplar_sr.paper_tables import (
    HOW,
    PAPER_6_1,
    Fig68Row,
    Table61Row,
    plot_fig_6_8,
    write_fig_6_8,
    write_table_6_1,
)
from experiments.exemplar_sr.runs import LoadedRun, RunSet, find_runs

__all__ = ["AnalysisOptions", "main", "run_analysis"]

M_DEFAULT = 3  # Fig. 6.6's m, Table 6.1's protocol
VARIANTS = ("trained", "foreign_exemplars", "uniform_weights")  # the controls must fail
H6_DATA = {"occlusion_p": 0.5, "min_clean": 0}
L1_ONLY_NOTE = "no twin run (real CelebA: make experiment NAME=exemplar_sr/celeba_x8_l1_only)"


@dataclass
class AnalysisOptions:
    """The options of one analysis (the command-line flags of the same names).

    Attributes:
        root: Run root holding ``<prefix>_pwave``.
        prefix: Run names are ``<prefix>_<suffix>``.
        ablation_root: Where the optional runs are looked for after ``root``; None: ``root``
            only.
        out: Output folder; None: ``<root>/analysis``.
        rows: Examples per figure.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        seed: Seed of the identity derangements (H4's other detail, the control's donors) and
            of the editing sets.
        batch_size: Items per forward pass.
        limit: Evaluate only the first ``limit`` test items (smoke tests); None: all of them.
        progress: Show progress bars.
    """

    root: Path
    prefix: str = "exemplar_sr/synthetic"
    ablation_root: Path | None = None
    out: Path | None = None
    rows: int = 8
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    batch_size: int = 16
    limit: int | None = None
    progress: bool = True


class Evaluator:
    """Runs and records every evaluation: ``summaries[key]`` (mean numbers), ``scores[key]``."""

    def __init__(self, options: AnalysisOptions) -> None:
        self.options = options
        self.summaries: dict[str, dict[str, Any]] = {}
        self.scores: dict[str, Scores] = {}

    def __call__(self, key: str, loaded: LoadedRun, dataset, m: int, uniform: bool = False):
        """Evaluate ``loaded``'s module on ``dataset`` at m; recorded under ``key``."""
        o = self.options
        if o.limit is not None:
            dataset = Subset(dataset, range(min(o.limit, len(dataset))))
        scores = evaluate(
            loaded.module,
            dataset,
            m,
            uniform=uniform,
            batch_size=o.batch_size,
            progress=o.progress,
            description=key,
        )
        self.scores[key] = scores
        self.summaries[key] = {"run": loaded.run.name, "m": m, **scores.summary()}
        return self.summaries[key]


def _has_regions(loaded: LoadedRun) -> bool:
    return loaded.split(M_DEFAULT).regions is not None


def _pwave_variants(ev: Evaluator, key: str, loaded: LoadedRun) -> dict:
    """The trained model and the two controls on the run's test split at m = 3: variant ->
    summary."""
    split = loaded.split(M_DEFAULT)
    foreign = ForeignExemplars(split, split, ev.options.seed)
    return {
        "trained": ev(key, loaded, split, M_DEFAULT),
        "foreign_exemplars": ev(f"{key} [foreign_exemplars]", loaded, foreign, M_DEFAULT),
        "uniform_weights": ev(f"{key} [uniform_weights]", loaded, split, M_DEFAULT, uniform=True),
    }


def _h4_pairs(ev: Evaluator, loaded: LoadedRun, true: dict) -> dict:
    """H4's swapped-detail evaluations (twin only): variant -> (true summary, swapped summary)."""
    split = loaded.split(M_DEFAULT)
    root = loaded.data_root
    codes = read_render_codes(root)
    seed = twin_seed(root, int(loaded.run.section("data")[1].get("seed", 0)))
    check_crop(split, codes, seed)
    swapped = SwappedDetail(split, codes, seed, ev.options.seed)
    foreign = ForeignExemplars(swapped, split, ev.options.seed)
    key = "pwave m=3 swapped detail"
    foreign_summary = ev(f"{key} [foreign_exemplars]", loaded, foreign, M_DEFAULT)
    return {
        "trained": (true["trained"], ev(key, loaded, swapped, M_DEFAULT)),
        # the control's exemplars are another identity's whatever was asked: no swap to follow
        "foreign_exemplars": (foreign_summary, foreign_summary),
        "uniform_weights": (
            true["uniform_weights"],
            ev(f"{key} [uniform_weights]", loaded, swapped, M_DEFAULT, uniform=True),
        ),
    }


def _h5_numbers(ev: Evaluator, runs: RunSet) -> tuple[dict, dict | None] | None:
    """(PWAVE variants, average fusion or None without its run) of the occluded runs; None
    without the occluded PWAVE run."""
    pwave, average = runs.get("occluded_pwave"), runs.get("occluded_average")
    if pwave is None:
        return None
    variants = _pwave_variants(ev, "occluded_pwave m=3", pwave)
    if average is None:
        return variants, None
    return variants, ev("occluded_average m=3", average, average.split(M_DEFAULT), M_DEFAULT)


def _h6_numbers(ev: Evaluator, runs: RunSet) -> dict[int, float] | None:
    """m -> detail PSNR of the random-m model at m = 1..5 under H6's occlusion; None without it."""
    loaded = runs.get("uniform1to5")
    if loaded is None:
        return None
    return {
        m: ev(f"uniform1to5 m={m} occluded", loaded, loaded.split(m, **H6_DATA), m)["detail_psnr"]
        for m in range(1, 6)
    }


def _not_checked(runs: RunSet, regions: bool) -> dict[str, str]:
    """Why each check that was not run was not."""
    skipped = {}
    if runs.get("m0") is None:
        skipped["H2"] = skipped["H3"] = f"no m=0 run: {runs.missing[runs.name('m0')]}"
    needs = {
        "H5": ("occluded_pwave", "occluded_average"),
        "H5_weights": ("occluded_pwave",),
        "H6": ("uniform1to5",),
    }
    for name in ("H4", "H5_weights", "H5", "H6"):
        absent = [runs.missing[runs.name(s)] for s in needs.get(name, ()) if not runs.get(s)]
        if not regions:
            skipped[name] = "the data has no detail regions (only the exemplar twin has)"
        elif absent:
            skipped[name] = "not run: " + "; ".join(absent)
    return skipped


def _checks(runs: RunSet, ev: Evaluator) -> tuple[dict, dict]:
    """H2-H6 per thresholds (``spec``, ``cpu``) and variant; and why a check was not run."""
    pwave, m0 = runs.get("pwave"), runs.get("m0")
    regions = _has_regions(pwave)
    true = _pwave_variants(ev, "pwave m=3", pwave)
    m0_summary = ev("m0", m0, m0.split(0), 0) if m0 else None
    h4 = _h4_pairs(ev, pwave, true) if regions else None
    h5 = _h5_numbers(ev, runs) if regions else None
    h6 = _h6_numbers(ev, runs) if regions else None
    checks: dict[str, dict] = {}
    for kind, t in (("spec", assertions.SPEC), ("cpu", assertions.CPU_CALIBRATED)):
        checks[kind] = {}
        for variant in VARIANTS:
            found: dict[str, dict] = {}
            if m0_summary is not None:
                found["H2"] = assertions.check_h2(true[variant], m0_summary, t)
                found["H3"] = assertions.check_h3(true[variant], m0_summary)
            if h4 is not None:
                found["H4"] = assertions.check_h4(*h4[variant], t)
            if h5 is not None:
                occluded = h5[0][variant]
                found["H5_weights"] = assertions.check_occluded_weights(occluded, M_DEFAULT, t)
                if h5[1] is not None:
                    found["H5"] = assertions.check_h5(occluded, h5[1], M_DEFAULT, t)
            if h6 is not None and variant == "trained":  # no control asked of H6
                found["H6"] = assertions.check_h6(h6, t)
            checks[kind][variant] = found
    return checks, _not_checked(runs, regions)


def _fig_6_8(runs: RunSet, ev: Evaluator) -> list[Fig68Row]:
    """The bars: per scale, m = 0..5 and average fusion, from the best run there is (``HOW``)."""
    rows: list[Fig68Row] = []
    for scale, base in ((8, ""), (16, "x16_")):
        pwave = runs.get(f"{base}pwave")
        if pwave is None:
            continue
        for m in range(6):
            own = runs.get(f"{base}m{m}") if m != M_DEFAULT else pwave
            loaded, how = (own, "own") if own is not None else (pwave, "m3")
            key = f"{base}m{m}" if how == "own" and m != M_DEFAULT else f"{base}pwave m={m}"
            summary = ev.summaries.get(key) or ev(key, loaded, loaded.split(m), m)
            rows.append(_bar(scale, m, "pwave", summary, HOW[how], loaded))
        average = runs.get("average") if scale == 8 else None
        if average is not None:
            summary = ev("average m=3", average, average.split(M_DEFAULT), M_DEFAULT)
            rows.append(_bar(scale, M_DEFAULT, "average", summary, HOW["own"], average))
        else:
            key = f"{base}pwave m=3 [uniform_weights]"
            summary = ev.summaries.get(key) or ev(
                key, pwave, pwave.split(M_DEFAULT), M_DEFAULT, uniform=True
            )
            rows.append(_bar(scale, M_DEFAULT, "average", summary, HOW["uniform"], pwave))
        random_m = runs.get("uniform1to5") if scale == 8 else None
        if random_m is not None:
            for m in range(1, 6):
                summary = ev(f"uniform1to5 m={m}", random_m, random_m.split(m), m)
                rows.append(_bar(scale, m, "pwave", summary, HOW["random_m"], random_m))
    return rows


def _bar(scale: int, m: int, fusion: str, summary: dict, how: str, loaded: LoadedRun) -> Fig68Row:
    return Fig68Row(scale, m, fusion, summary["ssim"], summary["psnr"], how, loaded.run.name)


def _dataset(loaded: LoadedRun) -> str:
    return "CelebA exemplar twin (synthetic)" if _has_regions(loaded) else "CelebA"


def _table_6_1(runs: RunSet, ev: Evaluator) -> list[Table61Row]:
    """Table 6.1's rows: bicubic from each scale's PWAVE evaluation, ours by critic / no critic."""
    rows = []
    for scale, base in ((8, ""), (16, "x16_")):
        found: dict[str, tuple[LoadedRun, dict]] = {}
        for suffix in (f"{base}pwave", f"{base}disc"):
            loaded = runs.get(suffix)
            if loaded is None:
                continue
            key = "pwave m=3" if suffix == "pwave" else f"{suffix} m=3"
            summary = ev.summaries.get(key) or ev(key, loaded, loaded.split(M_DEFAULT), M_DEFAULT)
            hp = loaded.module.hparams
            if hp.lambda_p == 0 and hp.lambda_adv == 0:
                method = "Ours (L1 only, text)"
            elif loaded.has_critic:
                method = "Ours (w/ Discriminator)"
            else:
                method = "Ours (w/o Discriminator)"
            found.setdefault(method, (loaded, summary))
            found.setdefault("Bicubic", (loaded, summary))
        for (method, paper_scale), cells in PAPER_6_1.items():
            if paper_scale != scale:
                continue
            loaded, summary = found.get(method, (None, None))
            l1_only = found.get("Ours (L1 only, text)")
            if loaded is None and method == "Ours (w/o Discriminator)" and l1_only:
                note = (
                    f"the twin's run {l1_only[0].run.name} has no perceptual term: it is the "
                    "'L1 only' row (real CelebA: make experiment "
                    f"NAME=exemplar_sr/celeba_x{scale}_no_disc)"
                )
            elif loaded is None:
                suggestion = {
                    "Ours (w/ Discriminator)": runs.name(f"{base}disc"),
                    "Ours (w/o Discriminator)": runs.name(f"{base}pwave"),
                    "Bicubic": runs.name(f"{base}pwave"),
                }.get(method)
                note = f"not run: make experiment NAME={suggestion}" if suggestion else L1_ONLY_NOTE
            else:
                note = f"run {loaded.run.name}, m=3 test split"
            for metric, (celeba, webface) in cells.items():
                key = metric if method != "Bicubic" else f"{metric}_bicubic"
                value = None if summary is None else summary[key]
                dataset = "" if loaded is None else _dataset(loaded)
                rows.append(
                    Table61Row(method, scale, metric, celeba, webface, value, dataset, note)
                )
    return rows


def _figures(
    runs: RunSet, ev: Evaluator, out: Path, options: AnalysisOptions
) -> tuple[list[str], list[str]]:
    """The figures written, and notes on what was left out."""
    n = options.rows
    images = ev.scores["pwave m=3"].images
    lr, exemplars, sr, hr, weights = (images[k] for k in ("lr", "exemplars", "sr", "hr", "weights"))
    written = [
        figures.save_hallucinations(lr, exemplars, sr, hr, out / "hallucinations.png", n),
        figures.save_weight_maps(exemplars, weights, out / "weights.png", n),
    ]
    # Fig. 6.9 on the data each pair was trained for: clean, else with occluded exemplars
    for average, key in (("average", "pwave m=3"), ("occluded_average", "occluded_pwave m=3")):
        if runs.get(average) is not None and key in ev.scores:
            path = out / "fusion_comparison.png"
            written.append(_fusion_comparison(runs.get(average), ev.scores[key].images, path, n))
            break
    editing, notes = _editing(runs.get("pwave"), n, options.seed, out / "editing.png")
    written += [editing] if editing else []
    return [str(p) for p in written], notes


def _fusion_comparison(average: LoadedRun, images: dict, path: Path, count: int) -> Path:
    """Fig. 6.9: the average-fusion model on the PWAVE evaluation's first batch beside PWAVE."""
    device = next(average.module.parameters()).device
    lr, exemplars = images["lr"], images["exemplars"]
    with torch.no_grad():
        average_sr = average.module.hallucinate(lr.to(device), exemplars.to(device))[0].cpu()
    return figures.save_fusion_comparison(
        lr, average_sr, images["sr"], exemplars, images["weights"], images["hr"], path, count
    )


#: The editing figure's other-identity exemplar sets: (attribute, value; None: the target's
#: opposite).
EDITS: tuple[tuple[str, bool | None], ...] = (("Male", None), ("Eyeglasses", True))


def _editing(pwave: LoadedRun, count: int, seed: int, path: Path) -> tuple[Path | None, list]:
    """Figs. 6.10 / 6.11 on the first ``count`` test targets: their own exemplars, then per
    ``EDITS`` entry another identity's (``exemplars_by_attribute``); an entry that some target
    has no such identity for is left out, with a note."""
    split = pwave.split(M_DEFAULT)
    items = [split[i] for i in range(min(count, len(split)))]
    edits, notes = [], []
    for attribute, value in EDITS:
        column = ATTRIBUTE_NAMES.index(attribute)
        try:
            sets = [
                split.exemplars_by_attribute(
                    i,
                    attribute,
                    (not bool(item["attributes"][column])) if value is None else value,
                    M_DEFAULT,
                    seed,
                )["exemplars"]
                for i, item in enumerate(items)
            ]
        except ValueError as err:
            notes.append(f"editing.png: no {attribute} column ({err})")
            continue
        edits.append(torch.stack(sets))
    if not edits:
        return None, notes
    lr, hr = (torch.stack([item[k] for item in items]) for k in ("image_lr", "image_hr"))
    own = torch.stack([item["exemplars"] for item in items])
    device = next(pwave.module.parameters()).device

    def hallucinate(exemplars: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pwave.module.hallucinate(lr.to(device), exemplars.to(device))[0].cpu()

    pairs = [(exemplars, hallucinate(exemplars)) for exemplars in edits]
    return figures.save_editing(lr, hallucinate(own), pairs, hr, path, count), notes


def _evaluation_csv(ev: Evaluator, checks: dict, path: Path) -> None:
    """Every mean number (section ``metric``) and every assertion number (``assertion``)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["section", "name", "variant", "thresholds", "quantity", "value"])
        for key, summary in ev.summaries.items():
            name, _, variant = key.partition(" [")
            for quantity, value in summary.items():
                if quantity not in ("run",):
                    row = ["metric", name, variant.rstrip("]") or "trained", "", quantity, value]
                    writer.writerow(row)
        for kind, per in checks.items():
            for variant, found in per.items():
                for name, numbers in found.items():
                    for quantity, value in numbers.items():
                        writer.writerow(["assertion", name, variant, kind, quantity, value])


def run_analysis(options: AnalysisOptions) -> dict[str, Any]:
    """Every number, table and figure of the runs under ``options.root`` (see the module doc)."""
    device = analysis_device(options.device)
    runs = find_runs(Path(options.root), options.prefix, options.ablation_root, device)
    out = Path(options.out or Path(options.root) / "analysis")
    out.mkdir(parents=True, exist_ok=True)
    ev = Evaluator(options)
    checks, skipped = _checks(runs, ev)
    bars = _fig_6_8(runs, ev)
    table = write_table_6_1(_table_6_1(runs, ev), out / "tables" / "table_6_1.csv")
    written = [str(table), str(write_fig_6_8(bars, out / "fig_6_8.csv"))]
    plot = plot_fig_6_8(bars, out / "fig_6_8.png")
    written.append(str(plot) if plot else "fig_6_8.png not drawn: matplotlib is not installed")
    _evaluation_csv(ev, checks, out / "evaluation.csv")
    results: dict[str, Any] = {
        "runs": {suffix: loaded.run.describe() for suffix, loaded in runs.runs.items()},
        "missing_runs": runs.missing,
        "random_trunks": bool(runs.get("pwave").module.hparams.random_trunks),
        "assertions": checks["spec"]["trained"],
        "controls": {v: checks["spec"][v] for v in VARIANTS if v != "trained"},
        "assertions_cpu": checks["cpu"],
        "cpu_thresholds": asdict(assertions.CPU_CALIBRATED),
        "not_checked": skipped,
        "evaluations": ev.summaries,
        "tables": written,
        "options": {k: str(v) for k, v in asdict(options).items()},
    }
    results["figures"], results["figure_notes"] = _figures(runs, ev, out, options)
    (out / "analysis.json").write_text(json.dumps(jsonable(results), indent=2))
    (out / "analysis.md").write_text(_markdown(results, checks, table))
    return results


def _markdown(results: dict[str, Any], checks: dict, table: Path) -> str:
    lines = ["# Exemplar SR (PWAVE) analysis", ""]
    lines += [f"- `{k}`: `{v['run_dir']}`" for k, v in results["runs"].items()]
    lines += ["", "Passed (the controls must fail):", ""]
    header = [f"{v} ({kind})" for kind in ("spec", "cpu") for v in VARIANTS]
    lines += ["| assertion | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    names = sorted({n for per in checks["spec"].values() for n in per})
    for name in names:
        cells = [
            str(checks[kind][v].get(name, {}).get("passed", ""))
            for kind in ("spec", "cpu")
            for v in VARIANTS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Evaluations (means over the test items):", ""]
    lines += ["| evaluation | m | psnr | ssim | detail_psnr | psnr_bicubic |", "|---" * 6 + "|"]
    for key, summary in results["evaluations"].items():
        cells = [summary.get(q, float("nan")) for q in ("psnr", "ssim", "detail_psnr")]
        cells.append(summary["psnr_bicubic"])
        lines.append(f"| {key} | {summary['m']} | " + " | ".join(f"{c:.4g}" for c in cells) + " |")
    if results["not_checked"]:
        lines += ["", "Not checked:", ""]
        lines += [f"- {k}: {v}" for k, v in results["not_checked"].items()]
    if results["figure_notes"]:
        lines += ["", "Figures:", ""] + [f"- {note}" for note in results["figure_notes"]]
    if results["missing_runs"]:
        lines += ["", "Missing optional runs:", ""]
        lines += [f"- `{k}`: `{v}`" for k, v in results["missing_runs"].items()]
    lines += ["", "## table_6_1", "", "```", table.read_text().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> AnalysisOptions:
    parser = analysis_parser(__doc__, "exemplar_sr/synthetic", batch_size=16)
    parser.add_argument("--ablation-root", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None)
    return options_from(AnalysisOptions, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return print_summary(run_analysis(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
