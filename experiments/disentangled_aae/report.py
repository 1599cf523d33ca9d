"""The Markdown report of the disentangled AAE's analysis: the paper's table layouts, ours beside
the paper's numbers (spec ``disentangle`` section 6), which are shown as references only.

Our stage rows are named as the paper's: Stage B (``disentangle``) is its "CelebA" model, Stage C
(``joint``) its "CelebA (joint)". Every substitution is labelled [SUBST].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_modules.disentangled_aae.feature_blocks import (
    FACTOR_BLOCKS,
    TABLE2_BLOCKS,
    TABLE3_BLOCKS,
    block_label,
)
from lightning_modules.disentangled_aae.pose_error import ANGLES

__all__ = ["PAPER", "ROW_NAMES", "markdown"]

ROW_NAMES = {
    "ae": "ae (paper: the AAE)",
    "disentangle": "disentangle (paper: CelebA)",
    "joint": "joint (paper: CelebA (joint))",
}
"""Our stage runs' rows, with the paper's names of the same rows."""

PAPER_ROWS = {"disentangle": "CelebA", "joint": "CelebA (joint)"}

PAPER: dict[str, Any] = {
    "table1": {"fid": 17.79, "rmse": 22.87},  # the AAE trained on CelebA (160K), CelebA RMSE
    "table2": {  # LFW verification accuracy in %, columns of TABLE2_BLOCKS
        "disentangle": (55.8, 64.9, 62.7, 67.5, 80.3),
        "joint": (53.3, 64.3, 62.2, 66.3, 85.4),
    },
    "table3_avg": {  # AffectNet validation macro AUC over 8 classes, rows of TABLE3_BLOCKS
        "disentangle": (0.55, 0.70, 0.64, 0.74, 0.81),
        "joint": (0.58, 0.76, 0.69, 0.79, 0.86),
    },
    "pose_mae_deg": (2.66, 2.95, 2.05),  # CelebA test against OpenFace's poses
}
"""The paper's numbers (Tables 1-3 and the pose error), references only."""


def _f(value: float | None, digits: int = 3, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _table1(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            ROW_NAMES[stage],
            _f(row["rmse"], 2),
            _f(row["rmse_phi"], 2) if stage != "ae" else "-",
            _f(row["rmse_mean_image"], 2),
            _f(row["fid"], 2),
        ]
        for stage, row in results["table1"].items()
    ]
    paper = PAPER["table1"]
    rows.append(
        [
            "paper: AAE on CelebA, 128 px (reference)",
            f"{paper['rmse']}",
            "-",
            "-",
            f"{paper['fid']}",
        ]
    )
    test_images = next(iter(results["table1"].values()))["test_images"]
    return [
        f"## Table 1: reconstruction, test split ({test_images} images), RMSE on the 0-255 scale",
        "",
        *_table(
            ["Stage", "RMSE G(E(x))", "RMSE G(Phi^-1(Phi(E(x))))", "RMSE mean train image", "FID"],
            rows,
        ),
        "FID: the run's last `test/fid` in its metrics.csv (n/a: not logged).",
        "",
    ]


def _table2(results: dict[str, Any]) -> list[str]:
    rows = []
    for stage, row in results["table2"].items():
        rows.append(
            [
                ROW_NAMES[stage],
                *(_f(row["accuracy"][b], 1, 100) for b in TABLE2_BLOCKS),
            ]
        )
    for stage, values in PAPER["table2"].items():
        rows.append([f"paper: {PAPER_ROWS[stage]}, LFW (reference)", *(f"{v}" for v in values)])
    pairs = next(iter(results["table2"].values()))["pairs"]
    return [
        "## Table 2: verification accuracy (%) per sub-vector",
        "",
        "[SUBST] Pairs of CelebA identities instead of LFW: the threshold is fitted on "
        f"{pairs['val']['same']} same + {pairs['val']['different']} different val pairs and "
        f"scored on {pairs['test']['same']} same + {pairs['test']['different']} different test "
        "pairs (identity-disjoint splits). Chance is 50%.",
        "",
        *_table(["Trained on", *(block_label(b) for b in TABLE2_BLOCKS)], rows),
    ]


def _table3(results: dict[str, Any], classes: Sequence[str]) -> list[str]:
    rows = []
    for stage, table in results["table3"].items():
        prefix = "" if stage == "disentangle" else "Joint "
        for block, paper in zip(TABLE3_BLOCKS, PAPER["table3_avg"][stage], strict=True):
            cells = table["rows"][block]
            rows.append(
                [
                    f"{prefix}{block_label(block)} ({stage})",
                    *(_f(cells["per_class"][c]) for c in classes),
                    _f(cells["macro"]),
                    f"{paper:.2f}",
                ]
            )
    counts = next(iter(results["table3"].values()))["class_counts"]
    return [
        "## Table 3: expression probe, one-vs-rest ROC-AUC on the test split",
        "",
        "[SUBST] Pseudo labels: 4 proxy classes from CelebA's Smiling x Mouth_Slightly_Open "
        "instead of AffectNet's 8 expressions, so the numbers are not comparable with the "
        "paper's (its AVG column, AffectNet validation, is shown as a reference only). Probe "
        "trained 5 epochs on training-split features. Images per class: "
        + "; ".join(
            f"{split} " + ", ".join(f"{name} {n}" for name, n in per_class.items())
            for split, per_class in counts.items()
        )
        + ".",
        "",
        *_table(["Features", *classes, "AVG", "paper AVG (reference)"], rows),
        *(
            [
                "",
                "Fig. 6: the f_e probe's class accuracy on the test split: "
                + ", ".join(f"{stage} {_f(shown['accuracy'])}" for stage, shown in fig6.items())
                + ".",
            ]
            if (fig6 := results.get("fig6"))
            else []
        ),
    ]


def _pose(results: dict[str, Any]) -> list[str]:
    rows = [
        [ROW_NAMES[s], *(_f(mae[a], 2) for a in ANGLES)]
        for s, mae in results["pose_mae_deg"].items()
    ]
    rows.append(
        ["paper: CelebA test vs OpenFace (reference)", *(f"{v}" for v in PAPER["pose_mae_deg"])]
    )
    return [
        "## Pose error of f_p: MAE in degrees, test split",
        "",
        "[SUBST] Fitted poses: the labels are fitted from the 5 aligned landmarks, not OpenFace's.",
        "",
        *_table(["Stage", *ANGLES], rows),
    ]


def _probes(results: dict[str, Any]) -> list[str]:
    rows = []
    for stage in results["pose_r2"]:
        k = results["retrieval"][stage]["k"]
        for block in FACTOR_BLOCKS:
            rows.append(
                [
                    f"{stage}",
                    block_label(block),
                    _f(results["pose_r2"][stage][block]),
                    _f(results["table2"][stage]["accuracy"][block]),
                    _f(results["table3"][stage]["rows"][block]["macro"]),
                    _f(results["retrieval"][stage]["identity_precision_at_k"][block]),
                ]
            )
    return [
        "## Probe matrix and retrieval (suite extras)",
        "",
        "Pose: test R^2 of a ridge probe on the sub-vector, trained on the probes' training "
        "images ([SUBST] fitted poses). Identity: Table 2's accuracy ([SUBST] CelebA pairs). "
        "Expression: Table 3's macro AUC ([SUBST] pseudo labels). Precision@k: share of a test "
        f"query's {k} nearest test images (L2) with its identity.",
        "",
        *_table(
            [
                "Stage",
                "Sub-vector",
                "pose R^2",
                "identity verification",
                "expression AUC",
                f"identity precision@{k}",
            ],
            rows,
        ),
    ]


def markdown(results: dict[str, Any]) -> str:
    """The report of ``run_analysis``'s results."""
    data = results["data"]
    images = data["images"]
    lines = [
        "# Disentangled AAE analysis",
        "",
        f"Data: `{data['data_root']}`; {images['train']} training images for the probes, "
        f"{images['val']} val, {images['test']} test. The paper's numbers are references only: "
        "its data (CelebA at 128 px, LFW, AffectNet, OpenFace poses) is not ours.",
        "",
        *_table1(results),
        *_table2(results),
        *_table3(results, data["expression_classes"]),
        *_pose(results),
        *_probes(results),
        "## Figures",
        "",
        *(f"- `{name}`" for name in results["figures"].values()),
        "",
        "## Runs",
        "",
        *(f"- {s}: `{r['checkpoint']}` ({r['which']})" for s, r in results["runs"].items()),
        "",
    ]
    lines += [f"Note: {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"
