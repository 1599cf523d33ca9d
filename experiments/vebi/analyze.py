"""VEBI's interpretation and feature-importance test (thesis ch. 3, Fig. 3.4) on finished runs.

    python -m experiments.vebi.analyze --root runs [--prefix vebi/mnist] [--out D]
        [--mu 10] [--draws 10] [--center] [--include-pool] [--device cpu] [--untrained]
        [--shuffle-labels] [--no-progress] [--occlusion-images N] [--occlusion-patch 0.125]
        [--occlusion-max-fraction 0.3] [--average-images N]

reads the newest finished run of ``<prefix>_classifier`` under ``--root`` (the classifier F, its
best checkpoint, and its DataModule from its config) and, when there is one, ``<prefix>_responses``
(``responses_train.pt``: x of every training image, written by the predict stage
``vebi.response_stage``); without it x is computed here. Then:

1. the mu-lasso of Eq. 3.1 per pool (``all``, ``only_conv``) on the training images
   (``vebi.interpretation``): the relevant (layer, filter) pairs;
2. the feature-importance test (``vebi.feature_importance``) on the test split: mCA of F with no
   ablation, with each pool's relevant filters ablated, and with ``--draws`` per-layer-matched
   random sets of each;
3. on data with part masks (the an8Flower twin), Tab. 3.1 (``localization_table``): AUC-IoU of
   every method's heatmaps (``--top-k`` relevant filters for the filter-drawing rows) and of two
   reference maps, and the artefact comparison of ours against Deconv+GB; with every candidate
   part's mask (double-12c, ``part_masks``), the part-mass and part-switch numbers
   (``part_localization``);
4. the spec's assertions (``assertions``): F's accuracy precondition, drop(All) at least 15
   points above the random sets' mean drop, and on the twin the localization and artefact ones
   (and on double-12c the part-mass and part-switch ones);
5. with ``--occlusion-images N``, the box-occlusion study of ours against Deconv+GB on the first
   N test images of every run, and with ``--average-images N`` (the spec's 100), Fig. 3.5's
   average images of the first run's top-N crops (``visual_quality``).

Controls (the ablation assertion must fail under them): ``--untrained`` replaces F by a freshly
initialised net of the same architecture (seeded; x is then computed here), ``--shuffle-labels``
fits W on labels permuted over the training images. Writes into ``<root>/<prefix>_analysis``
(``--out``): ``feature_counts.csv``, ``fig_3_4.csv``, ``fig_3_4.png``, ``table_3_1.csv`` (the
twin), ``relevant_filters.pt`` (W and the layer table), ``analysis.json`` and ``analysis.md``;
with the visual options also ``box_occlusion.csv``, ``average_images.pt`` and ``fig_3_5.png``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import seed_everything
from torch.utils.data import DataLoader

from experiments.analysis_output import (
    analysis_device,
    analysis_parser,
    jsonable,
    options_from,
    print_summary,
)
from experiments.run_dirs import newest_run_dir
from experiments.stage_runs import StageRun, find_stage_run
from experiments.vebi import assertions
from experiments.vebi.localization_table import evaluate_localization, pooled, write_table_3_1
from experiments.vebi.paper_tables import plot_fig_3_4, write_feature_counts, write_fig_3_4
from experiments.vebi.part_localization import evaluate_parts, pooled_parts, same_hue_classes
from experiments.vebi.visual_quality import (
    dataset_mean,
    occlusion_study,
    plot_fig_3_5,
    save_average_images,
    write_box_occlusion,
)
from lightning_modules.vebi.average_images import AverageImage, average_images
from lightning_modules.vebi.feature_importance import ablation_sets, ablation_study
from lightning_modules.vebi.interpretation import Interpretation, fit_interpretation
from lightning_modules.vebi.response_stage import RESPONSES_PREFIX
from lightning_modules.vebi.responses import ResponseIndex, responses_of

__all__ = ["AnalysisOptions", "main", "run_analysis"]

POOLS = ("all", "only_conv")


@dataclass(frozen=True)
class AnalysisOptions:
    root: Path
    prefix: str = "vebi/mnist"
    out: Path | None = None
    mu: float = 10.0
    draws: int = 10
    top_k: int = 5
    folds: int | None = None
    center: bool = False
    include_pool: bool = False
    untrained: bool = False
    shuffle_labels: bool = False
    seed: int = 0
    device: str = "auto"
    batch_size: int = 500
    progress: bool = True
    occlusion_images: int = 0  # test images of the box-occlusion study per run (0: off)
    occlusion_patch: float = 1 / 8  # patch side / image side (spec decision 9)
    occlusion_max_fraction: float = 0.3  # stop once this fraction is occluded (decision 9)
    average_images: int = 0  # top-N crops per Fig. 3.5 tile, first run only (0: off; spec 100)


def _loader(data: Any, split: str, batch_size: int) -> DataLoader:
    return DataLoader(data.splits[split], batch_size=batch_size, shuffle=False)


@torch.no_grad()
def _stored_responses(root: Path, prefix: str, index: ResponseIndex) -> dict | None:
    """``responses_train.pt`` of the newest ``<prefix>_responses`` run, when there is one."""
    name = f"{RESPONSES_PREFIX}_train.pt"
    run_dir = newest_run_dir(root, f"{prefix}_responses", name)
    if run_dir is None:
        return None
    path = run_dir / name
    stored = torch.load(path, map_location="cpu", weights_only=True)
    widths = [layer["width"] for layer in stored["layers"]]
    if widths != [layer.width for layer in index.layers]:
        raise ValueError(
            f"{path} holds x of layers {stored['layers']}, not of F's {index.layers}: run the "
            "responses stage with the same include_pool as the analysis"
        )
    return stored | {"path": str(path)}


def _classifier(run: StageRun, options: AnalysisOptions) -> torch.nn.Module:
    module = run.load_module()
    if options.untrained:  # the same architecture, freshly initialised (seeded)
        seed_everything(options.seed, verbose=False)
        module = type(module)(**module.hparams)
    return module.net.eval()


@dataclass
class RunResult:
    """What the analysis found for one classifier run (one fold)."""

    run: StageRun
    index: ResponseIndex
    fits: dict[str, Interpretation]
    mca: dict[str, float]
    localization: dict[str, float] | None
    responses: str
    training_images: int
    variant: str | None
    occlusion: dict[str, float] | None = None
    average_images: list[AverageImage] | None = None

    def record(self) -> dict[str, Any]:
        """Its numbers, for analysis.json."""
        return {
            "classifier": self.run.describe(),
            "responses": self.responses,
            "training_images": self.training_images,
            "feature_counts": {p: self.index.counts(f.selected) for p, f in self.fits.items()},
            "selected": {p: int(f.selected.sum()) for p, f in self.fits.items()},
            "lasso": {
                p: {
                    "converged": int(f.solution.converged.sum()),
                    "classes": int(f.weights.shape[1]),
                    "max_iterations": int(f.solution.iterations.max()),
                }
                for p, f in self.fits.items()
            },
            "mca": self.mca,
            "drops": {p: assertions.ablation_drops(self.mca, p) for p in POOLS},
            "localization": self.localization,
            "box_occlusion": self.occlusion,
        }


def _analyse_run(
    name: str, options: AnalysisOptions, device: torch.device, first: bool = True
) -> RunResult:
    """Interpretation, feature importance, (on data with masks) localization and, by the
    options, the box-occlusion study and (``first``) the average images of one run."""
    run = find_stage_run(options.root, name, "--prefix")
    net = _classifier(run, options).to(device)
    index = ResponseIndex.of(net, options.include_pool)
    data = run.datamodule(num_workers=0)
    data.prepare_data()
    data.setup("fit")
    stored = None
    if not options.untrained and not options.folds:
        stored = _stored_responses(options.root, options.prefix, index)
    if stored is not None:
        x, labels, source = stored["x"], stored["label"], stored["path"]
    else:
        loader = _loader(data, "train", options.batch_size)
        x, labels = responses_of(net, index, loader, device, progress=options.progress)
        source = "computed by the analysis"
    num_classes = int(data.num_classes)
    fits: dict[str, Interpretation] = {
        pool: fit_interpretation(
            x, labels, index, num_classes, pool=pool, mu=options.mu, center=options.center,
            shuffle_labels=options.shuffle_labels, seed=options.seed, device=device,
            progress=options.progress,
        )
        for pool in POOLS
    }  # fmt: skip
    selected = {pool: fit.selected for pool, fit in fits.items()}
    sets = ablation_sets(index, selected, options.draws, options.seed)
    data.setup("test")
    test = _loader(data, "test", options.batch_size)
    mca = ablation_study(net, index, test, sets, num_classes, device, options.progress)
    localization = None
    if "mask" in next(iter(test)):  # the an8Flower twin: Tab. 3.1 and the artefact check
        localization = evaluate_localization(
            net, index, fits["all"].weights, test, options.top_k, options.seed, device,
            options.progress,
        )  # fmt: skip
    if "part_masks" in next(iter(test)):  # double-12c: the part-mass and part-switch checks
        same_hue = same_hue_classes(data.class_table, data.candidate_parts)
        localization |= evaluate_parts(
            net, index, fits["all"].weights, test, same_hue, options.top_k, device, options.progress
        )
    variant = data.hparams.get("variant")
    result = RunResult(run, index, fits, mca, localization, source, len(x), variant)
    weights, train = fits["all"].weights, data.splits["train"]
    if options.occlusion_images:
        result.occlusion = occlusion_study(
            net, index, weights, test, options.occlusion_images, dataset_mean(train),
            options.top_k, options.seed, device, options.occlusion_patch,
            options.occlusion_max_fraction,
        )  # fmt: skip
    if options.average_images and first:
        result.average_images = average_images(
            net, index, weights, train, options.average_images, options.batch_size, device
        )
    return result


def _mean(values: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(torch.tensor([v[key] for v in values]).mean()) for key in values[0]}


def run_analysis(options: AnalysisOptions) -> dict[str, Any]:
    device = analysis_device(options.device)
    out = options.out or options.root / f"{options.prefix}_analysis"
    out.mkdir(parents=True, exist_ok=True)
    if options.folds:
        names = [f"{options.prefix}_fold{k}_classifier" for k in range(options.folds)]
    else:
        names = [f"{options.prefix}_classifier"]
    found = [_analyse_run(name, options, device, k == 0) for k, name in enumerate(names)]
    mca = _mean([r.mca for r in found])  # over the folds
    checks = {
        "precondition": assertions.check_precondition(mca),
        "ablation": assertions.check_ablation(mca),
    }
    dataset = options.prefix.rsplit("/", 1)[-1]
    selections = {
        name: {pool: fit.selected for pool, fit in r.fits.items()}
        for name, r in zip(names, found, strict=True)
    }
    counts = write_feature_counts(found[0].index, selections, out / "feature_counts.csv", dataset)
    tables = [str(counts), str(write_fig_3_4(mca, out / "fig_3_4.csv"))]
    plot = plot_fig_3_4(mca, out / "fig_3_4.png", f"Fig. 3.4 on {dataset} (suite)")
    tables.append(str(plot) if plot else "fig_3_4.png not drawn: matplotlib is not installed")
    localization = None
    if found[0].localization is not None:
        folds = [r.localization for r in found]
        tables.append(str(write_table_3_1(folds, out / "table_3_1.csv", found[0].variant)))
        localization = pooled(folds)
        checks["localization"] = assertions.check_localization(localization)
        checks["artefacts"] = assertions.check_artefacts(localization)
        if "part_images" in folds[0]:
            localization |= pooled_parts(folds)
            checks["part_mass"] = assertions.check_part_mass(localization)
            checks["part_switch"] = assertions.check_part_switch(localization)
    occlusion = {name: r.occlusion for name, r in zip(names, found, strict=True) if r.occlusion}
    if occlusion:
        tables.append(str(write_box_occlusion(occlusion, out / "box_occlusion.csv")))
    if found[0].average_images is not None:
        tiles = found[0].average_images
        tables.append(str(save_average_images(tiles, out / "average_images.pt")))
        figure = plot_fig_3_5(tiles, out / "fig_3_5.png", f"Fig. 3.5 on {dataset}, {names[0]}")
        tables.append(str(figure) if figure else "fig_3_5.png not drawn (no matplotlib or tiles)")
    torch.save(
        {
            "layers": [asdict(layer) for layer in found[0].index.layers],
            "mu": options.mu,
            "runs": {
                name: {f"weights_{p}": f.weights for p, f in r.fits.items()}
                for name, r in zip(names, found, strict=True)
            },
        },
        out / "relevant_filters.pt",
    )
    results: dict[str, Any] = {
        "runs": {name: r.record() for name, r in zip(names, found, strict=True)},
        "mca": mca,
        "drops": {pool: assertions.ablation_drops(mca, pool) for pool in POOLS},
        "localization": localization,
        "box_occlusion": occlusion or None,
        "assertions": checks,
        "tables": tables,
        "options": {k: str(v) for k, v in asdict(options).items()},
    }
    (out / "analysis.json").write_text(json.dumps(jsonable(results), indent=2))
    (out / "analysis.md").write_text(_markdown(results, out))
    return results


def _markdown(results: dict[str, Any], out: Path) -> str:
    lines = ["# VEBI analysis", ""]
    for name, run in results["runs"].items():
        lines.append(f"- `{name}`: `{run['classifier']['checkpoint']}`")
        lines.append(f"  - responses: {run['responses']} ({run['training_images']} images)")
    lines += [f"- options: `{results['options']}`", "", "Assertions (means over runs):", ""]
    for name, check in results["assertions"].items():
        lines.append(f"- {name}: {'passed' if check['passed'] else 'FAILED'} `{check}`")
    for name in ("feature_counts.csv", "fig_3_4.csv", "table_3_1.csv", "box_occlusion.csv"):
        if not (out / name).is_file():
            continue
        lines += ["", f"## {name}", "", "```", (out / name).read_text().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> AnalysisOptions:
    parser = analysis_parser(__doc__, "vebi/mnist", batch_size=500)
    parser.add_argument("--mu", type=float, default=10.0)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--center", action="store_true")
    parser.add_argument("--include-pool", action="store_true")
    parser.add_argument("--untrained", action="store_true")
    parser.add_argument("--shuffle-labels", action="store_true")
    parser.add_argument("--occlusion-images", type=int, default=0)
    parser.add_argument("--occlusion-patch", type=float, default=1 / 8)
    parser.add_argument("--occlusion-max-fraction", type=float, default=0.3)
    parser.add_argument("--average-images", type=int, default=0)
    return options_from(AnalysisOptions, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return print_summary(run_analysis(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
