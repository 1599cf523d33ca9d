"""The thesis's UST tables (ch. 4, Tables 4.1-4.5) and the suite's CSV of them.

The paper's numbers are SSIM / LPIPS-VGG x 100 (Tables 4.1, 4.2, 4.5) and recall in % (4.3,
4.4). ``table_rows`` lays ours beside them: one CSV row per (table, method, metric) with
``paper_value``, ``suite_value`` (empty where the suite did not run that row), ``dataset`` (what
the paper used, and what ours ran on: the twin, or VITON where the paper used FashionStyle:
"VITON (substitute)") and a ``note``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["PAPER", "PAPER_DATASET", "TableRow", "write_tables"]

#: Table 4.1 (FashionStyle ablation) and 4.2 / 4.5: (method, metric) -> value; None: "N/A".
QUALITY = ("tryon_roi_ssim", "tryon_roi_lpips", "takeoff_ssim", "takeoff_lpips")
PAPER: dict[str, dict[str, dict[str, float | None]]] = {
    "4.1": {
        "W/O P. Loss": dict(zip(QUALITY, (66.78, 27.37, 58.96, 36.62), strict=True)),
        "W/O shared S.E.": dict(zip(QUALITY, (66.72, 27.38, 60.33, 34.94), strict=True)),
        "W/O mask attention": dict(zip(QUALITY, (64.63, 28.13, 60.94, 34.49), strict=True)),
        "W/O Fit-in module": dict(zip(QUALITY, (None, None, 60.11, 37.64), strict=True)),
        "Full model": dict(zip(QUALITY, (66.42, 27.02, 61.19, 34.37), strict=True)),
        "Supervised model": dict(zip(QUALITY, (69.51, 24.14, 61.54, 32.56), strict=True)),
    },
    "4.2": {
        "CycleGAN": {"takeoff_ssim": 45.63, "takeoff_lpips": 47.47},
        "MUNIT": {"takeoff_ssim": 45.97, "takeoff_lpips": 46.53},
        "MUNIT, shared S.E.": {"takeoff_ssim": 50.44, "takeoff_lpips": 49.15},
        "Ours": {"takeoff_ssim": 61.19, "takeoff_lpips": 34.37},
    },
    "4.3": {
        "Color histogram": {"recall@1": 1.5, "recall@5": 3.7, "recall@20": 9.3, "recall@50": 17.4},
        "AE+GAN": {"recall@1": 9.4, "recall@5": 21.9, "recall@20": 39.6, "recall@50": 57.3},
        "ResNet-50": {"recall@1": 11.9, "recall@5": 25.0, "recall@20": 40.9, "recall@50": 56.4},
        "ResNet-152": {"recall@1": 14.4, "recall@5": 29.1, "recall@20": 47.6, "recall@50": 62.8},
        "LPIPS-Alex": {"recall@1": 25.2, "recall@5": 42.0, "recall@20": 59.5, "recall@50": 72.0},
        "FashionNet (D=4096)": {
            "recall@1": 30.0,
            "recall@5": 56.2,
            "recall@20": 79.3,
            "recall@50": 90.9,
        },
        "FashionNet (D=128)": {
            "recall@1": 26.3,
            "recall@5": 52.3,
            "recall@20": 78.0,
            "recall@50": 89.6,
        },
        "FashionNet (D=8)": {
            "recall@1": 19.4,
            "recall@5": 47.0,
            "recall@20": 74.5,
            "recall@50": 88.2,
        },
        "Ours (SD=8)": {"recall@1": 17.1, "recall@5": 37.6, "recall@20": 58.1, "recall@50": 74.3},
        "Ours (SD=32)": {"recall@1": 18.7, "recall@5": 39.6, "recall@20": 62.5, "recall@50": 76.1},
        "Ours (SD=128)": {"recall@1": 19.4, "recall@5": 41.1, "recall@20": 64.1, "recall@50": 77.6},
        "LPIPS-Alex + Ours (SD=8, kappa=20)": {
            "recall@1": 24.4,
            "recall@5": 41.4,
            "recall@20": 58.1,
            "recall@50": 74.3,
        },
        "LPIPS-Alex + Ours (SD=128, kappa=5)": {
            "recall@1": 24.4,
            "recall@5": 41.1,
            "recall@20": 64.1,
            "recall@50": 77.6,
        },
    },
    "4.4": {
        "Ours (128)": {"recall@1": 20.2, "recall@5": 39.9, "recall@20": 64.9, "recall@50": 79.3},
        "LPIPS-Alex (640K)": {
            "recall@1": 42.3,
            "recall@5": 61.3,
            "recall@20": 77.2,
            "recall@50": 88.7,
        },
        "LPIPS-Alex + Ours (kappa=50)": {
            "recall@1": 41.6,
            "recall@5": 57.7,
            "recall@20": 72.8,
            "recall@50": 79.3,
        },
    },
    "4.5": {
        "Ours (faces)": dict(zip(QUALITY, (69.48, 15.65, 43.82, 39.97), strict=True)),
    },
}
#: The data each paper table was measured on.
PAPER_DATASET = {
    "4.1": "FashionStyle",
    "4.2": "FashionStyle",
    "4.3": "FashionStyle",
    "4.4": "VITON",
    "4.5": "MultiPIE",
}


@dataclass(frozen=True)
class TableRow:
    """One cell of a paper table beside ours."""

    table: str
    method: str
    metric: str
    paper_value: float | None
    suite_value: float | None
    dataset: str  # what ours was measured on
    note: str = ""

    @property
    def paper_dataset(self) -> str:
        """What the paper's value was measured on."""
        return PAPER_DATASET[self.table]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def write_tables(rows: Iterable[TableRow], folder: Path) -> list[Path]:
    """``table_4_<n>.csv`` per table (columns of ``TableRow``); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    by_table: dict[str, list[TableRow]] = {}
    for row in rows:
        by_table.setdefault(row.table, []).append(row)
    paths = []
    for table, table_rows in sorted(by_table.items()):
        path = folder / f"table_{table.replace('.', '_')}.csv"
        with path.open("w", newline="") as f:
            fields = [*asdict(table_rows[0]), "paper_dataset"]
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in table_rows:
                record = asdict(row) | {"paper_dataset": row.paper_dataset}
                record["paper_value"] = _fmt(row.paper_value)
                record["suite_value"] = _fmt(row.suite_value)
                writer.writerow(record)
        paths.append(path)
    return paths
