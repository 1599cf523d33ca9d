"""The ISTRC analysis's results as tables: ``evaluation.csv`` rows, ``analysis.md`` and the spec's
synthetic-assertion numbers (``assertion_numbers``).

``evaluation_rows`` gives one row per quantity: ``quantity``, ``value``, ``control`` (the
untrained mapping F for the circle, the label-shuffled classifiers for C_a and the edits; empty
where there is none) and ``note``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "HAIR",
    "UNRENDERED",
    "assertion_numbers",
    "evaluation_rows",
    "markdown",
    "write_csv",
]

HAIR = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
UNRENDERED = "Attractive"  # the twin draws it at random and does not render it (assertion 5)
COLUMNS = ("quantity", "value", "control", "note")
EDIT_KEYS = {
    "classifier_success": "fraction with C_a(z_T) >= 0.9 towards the target",
    "judge_raised": "fraction the judge scores decode(z_T) above x^ (towards the target)",
    "judge_flipped": "fraction the judge predicts the target on decode(z_T) but not on x^",
    "judge_mean_delta": "judge's mean change of the target probability, decode(z_T) - x^",
    "identity_cosine": "mean cos(E(decode(z_T)), E(x^)) (identity drift)",
    "other_mean_abs_delta": "judge's mean |delta p| on the other rendered attributes",
    "max_norm_error": "max | ||z_t|| - 1 | over every step",
    "max_step": "max ||z_t - z_{t-1}|| over every step",
}


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _get(tree: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def evaluation_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per quantity of ``results`` (as ``run_analysis`` returns them)."""
    rows: list[dict[str, Any]] = []

    def add(quantity: str, value: Any, control: Any = None, note: str = "") -> None:
        rows.append({"quantity": quantity, "value": value, "control": control, "note": note})

    v = results["verification"]
    add("verification accuracy (Euclidean)", v["accuracy_euclidean"], note="encoder test split")
    add("verification accuracy (spherical)", v["accuracy_spherical"], note="encoder test split")
    add("verification AUC (Euclidean)", v["auc_euclidean"])
    add("verification AUC (spherical)", v["auc_spherical"])
    add("|AUC Euclidean - AUC spherical|", v["auc_gap"], note="equal rankings for unit vectors")
    add("max | ||E(x)|| - 1 |", v["max_norm_error"], note="cached splits, E(x) and E(x^)")
    b = results["began"]
    add("BEGAN test L1 of D(x)", b["l1"])
    add("BEGAN test L1 of the mean train image", b["l1_mean_image"])
    add("BEGAN L1 ratio (D / mean image)", b["l1_ratio"], note="assertion 2: <= 0.6")
    add("BEGAN M_global at 10% of training", b["m_global_at_10pct"], note=b["m_global_reading"])
    add("BEGAN M_global final", b["m_global_final"], note=b["m_global_reading"])
    add("BEGAN M_global epoch mean at 10%", b["m_global_epoch_at_10pct"])
    add("BEGAN M_global last epoch mean", b["m_global_epoch_final"])
    note = f"over {b['k_logged_steps']} logged steps"
    add("BEGAN min k_t", b["k_min"], note=note)
    add("BEGAN max k_t", b["k_max"], note=note)
    m = results["mapping"]
    add("F test R^2 (logged)", m["logged_r2"], note="the mapping run's test/r2")
    add("F test R^2 (recomputed on the cache)", m["r2"], m["control_r2"], "control: untrained F")
    c = results["classifiers"]
    for name, value in c["trained"].items():
        logged = c["logged"]["trained"].get(name)
        add(
            f"C_a test AUROC {name}",
            value,
            c["shuffled"].get(name),
            f"logged {_fmt(logged)}; control: label-shuffled classifiers",
        )
    add("max |AUROC recomputed - logged|", c["max_logged_gap"], note="trained and shuffled runs")
    circle, control = results["circle"]["trained"], results["circle"]["untrained_mapping"]
    note = "control: untrained F"
    add("circle SSIM(x, x^)", circle["ssim"], control["ssim"], f"test split; {note}")
    add("circle SSIM(x, mean train image)", circle["ssim_mean_image"], note="baseline")
    add("circle L1(x, x^)", circle["l1"], control["l1"], note)
    add(circle["fid_name"] + " (x^ vs x)", circle["fid"], control["fid"], results["fid_note"])
    add("identity retention cos(E(x^), E(x))", circle["identity_cosine"],
        control["identity_cosine"], note)  # fmt: skip
    r, rc = circle["retrieval"], control["retrieval"]
    add("rank-1 identity retrieval of E(x^)", r["identity"], rc["identity"], note)
    add("rank-1 identity retrieval chance", r["identity_chance"], note="expected same-identity")
    add("rank-1 identity retrieval / chance", r["identity_over_chance"], rc["identity_over_chance"])
    add("rank-1 exact-image retrieval of E(x^)", r["exact"], rc["exact"], note)
    add("rank-1 exact-image retrieval chance", r["exact_chance"], note="1 / N")
    for name, scores in circle["judge_auroc"].items():
        add(f"judge test AUROC {name} on x", scores["x"], note="the judge on the test crops")
        add(
            f"judge test AUROC {name} on x^",
            scores["x_hat"],
            control["judge_auroc"][name]["x_hat"],
            f"the judge on the reconstructions; {note}",
        )
    for attribute, entry in results["edits"]["attributes"].items():
        trained, shuffled = entry.get("trained", {}), entry.get("shuffled", {})
        head = f"edit {entry['direction']} ({attribute} -> {entry['target']})"
        for key, label in EDIT_KEYS.items():
            add(
                f"{head}: {label}",
                trained.get(key),
                shuffled.get(key),
                f"{trained.get('count', 0)} test inputs; control: label-shuffled classifiers",
            )
        add(
            f"{head}: fraction the judge scores the trained edit above the control edit",
            entry.get("trained_above_shuffled"),
            note="paired, the same inputs edited by both classifier sets",
        )
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """``rows`` as ``evaluation.csv`` (numbers with 6 significant digits, empty where none)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row[k]) for k in COLUMNS})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def assertion_numbers(results: dict[str, Any]) -> dict[str, float]:
    """The numbers of the spec's synthetic assertions 1-6 (and their controls) from ``results``.

    Keys: 1 ``encoder_max_norm_error``, ``verification_accuracy`` (Euclidean), ``auc_gap``;
    2 ``k_min``, ``k_max``, ``l1_ratio``, ``m_global_at_10pct``, ``m_global_final``;
    3 ``mapping_r2`` (recomputed), ``mapping_r2_logged``; 4 ``ssim``, ``ssim_mean_image``,
    ``rank1_identity``, ``rank1_chance``, with ``control_ssim`` and ``control_rank1_identity``
    (untrained F); 5 ``auroc_Male``, ``auroc_Big_Nose``, ``auroc_hair_min``,
    ``auroc_unrendered`` (Attractive); 6 per edited attribute A: ``edit_A_classifier_success``,
    ``edit_A_judge_raised``, ``edit_A_max_norm_error``, ``edit_A_max_step``, with
    ``control_edit_A_judge_raised`` and ``control_edit_A_classifier_success`` (label-shuffled
    classifiers), and ``step_distance``.
    """
    v, b, m = results["verification"], results["began"], results["mapping"]
    circle, control = results["circle"]["trained"], results["circle"]["untrained_mapping"]
    auroc = results["classifiers"]["trained"]
    hair = [_nan(auroc.get(h)) for h in HAIR if h in auroc]
    hair = [value for value in hair if not math.isnan(value)]  # undefined: one class in test
    numbers = {
        "encoder_max_norm_error": v["max_norm_error"],
        "verification_accuracy": v["accuracy_euclidean"],
        "auc_gap": v["auc_gap"],
        "k_min": b["k_min"],
        "k_max": b["k_max"],
        "l1_ratio": b["l1_ratio"],
        "m_global_at_10pct": b["m_global_at_10pct"],
        "m_global_final": b["m_global_final"],
        "mapping_r2": m["r2"],
        "mapping_r2_logged": m["logged_r2"],
        "ssim": circle["ssim"],
        "ssim_mean_image": circle["ssim_mean_image"],
        "rank1_identity": circle["retrieval"]["identity"],
        "rank1_chance": circle["retrieval"]["identity_chance"],
        "control_ssim": control["ssim"],
        "control_rank1_identity": control["retrieval"]["identity"],
        "auroc_Male": _nan(auroc.get("Male")),
        "auroc_Big_Nose": _nan(auroc.get("Big_Nose")),
        "auroc_hair_min": min(hair, default=math.nan),
        "auroc_unrendered": _nan(auroc.get(UNRENDERED)),
        "step_distance": results["edits"]["settings"]["step_distance"],
    }
    for attribute, entry in results["edits"]["attributes"].items():
        for key in ("classifier_success", "judge_raised", "max_norm_error", "max_step"):
            numbers[f"edit_{attribute}_{key}"] = _nan(_get(entry, "trained", key))
        for key in ("classifier_success", "judge_raised"):
            numbers[f"control_edit_{attribute}_{key}"] = _nan(_get(entry, "shuffled", key))
    return numbers


def markdown(results: dict[str, Any]) -> str:
    """The evaluation table and the notes as a short Markdown report."""
    lines = [
        "# ISTRC analysis",
        "",
        "Control: the untrained mapping F for the circle, the label-shuffled classifiers for "
        "C_a and the edits.",
        "",
        "| Quantity | Value | Control | Note |",
        "|---|---|---|---|",
    ]
    for row in evaluation_rows(results):
        cells = (row["quantity"], _fmt(row["value"]), _fmt(row["control"]), row["note"])
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "Figures: " + ", ".join(results["figures"]), ""]
    lines += ["Runs: " + "; ".join(f"{s}: {r['run_dir']}" for s, r in results["runs"].items())]
    lines += [""] + [f"Note: {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"
