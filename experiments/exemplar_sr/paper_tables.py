"""The thesis's Table 6.1 and Fig. 6.8 (ch. 6) beside the suite's numbers, as CSV (and a bar chart).

Table 6.1 gives SSIM and PSNR (dB) on CelebA and on WebFace; WebFace is not in the suite, so its
column is kept as the paper's value and marked "not reproduced". ``table_6_1.csv`` has one row per
(method, scale, metric): ``paper_celeba``, ``paper_webface``, ``suite_value`` (empty where the
suite has no run of that row), ``dataset`` (what the suite value was measured on) and a ``note``.
The text's "L1 only" CelebA x8 row (no critic, no perceptual loss) is included.

Fig. 6.8 has bars only (no numbers): ``fig_6_8.csv`` lists the suite's (scale, m, fusion, ssim,
psnr) with ``how`` each was obtained, since a missing per-m model is stood in for by another
(``HOW``), and ``fig_6_8.png`` draws them as grouped bars when matplotlib is installed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = [
    "HOW",
    "PAPER_6_1",
    "Fig68Row",
    "Table61Row",
    "plot_fig_6_8",
    "write_fig_6_8",
    "write_table_6_1",
]

#: Table 6.1 and the text's L1-only value: (method, scale) -> metric -> (CelebA, WebFace or None).
PAPER_6_1: dict[tuple[str, int], dict[str, tuple[float, float | None]]] = {
    ("Bicubic", 8): {"ssim": (0.61, 0.68), "psnr": (20.72, 22.04)},
    ("Ours (w/o Discriminator)", 8): {"ssim": (0.74, 0.78), "psnr": (23.45, 24.92)},
    ("Ours (w/ Discriminator)", 8): {"ssim": (0.72, 0.76), "psnr": (23.18, 24.38)},
    ("Ours (L1 only, text)", 8): {"ssim": (0.69, None), "psnr": (22.35, None)},
    ("Bicubic", 16): {"ssim": (0.48, 0.57), "psnr": (17.56, 19.04)},
    ("Ours (w/o Discriminator)", 16): {"ssim": (0.62, 0.67), "psnr": (19.82, 20.55)},
    ("Ours (w/ Discriminator)", 16): {"ssim": (0.59, 0.61), "psnr": (19.13, 19.42)},
}
#: How a Fig. 6.8 value was obtained.
HOW = {
    "own": "own model",
    "m3": "model trained at m=3, evaluated at m",
    "uniform": "uniform weights at inference",
    "random_m": "model trained with m uniform in 1..5, evaluated at m",
}


@dataclass(frozen=True)
class Table61Row:
    """One (method, scale, metric) of Table 6.1 beside the suite's value."""

    method: str
    scale: int
    metric: str
    paper_celeba: float
    paper_webface: float | None
    suite_value: float | None
    dataset: str  # what the suite value was measured on
    note: str = ""


@dataclass(frozen=True)
class Fig68Row:
    """One bar pair of Fig. 6.8: a (scale, m, fusion) and how the suite got it."""

    scale: int
    m: int
    fusion: str
    ssim: float
    psnr: float
    how: str
    run: str


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_table_6_1(rows: Iterable[Table61Row], path: Path) -> Path:
    """``rows`` as CSV at ``path``; the WebFace cells marked "not reproduced"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(Table61Row)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for row in rows:
            digits = 4 if row.metric == "ssim" else 2
            record = asdict(row)
            record["paper_celeba"] = _fmt(row.paper_celeba, 2)
            webface = _fmt(row.paper_webface, 2)
            record["paper_webface"] = f"{webface} (not reproduced)" if webface else ""
            record["suite_value"] = _fmt(row.suite_value, digits)
            writer.writerow(record)
    return path


def write_fig_6_8(rows: Iterable[Fig68Row], path: Path) -> Path:
    """``rows`` as ``fig_6_8.csv`` (SSIM to 4 decimals, PSNR to 2)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(Fig68Row)])
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row) | {"ssim": f"{row.ssim:.4f}", "psnr": f"{row.psnr:.2f}"})
    return path


def plot_fig_6_8(rows: list[Fig68Row], path: Path) -> Path | None:
    """Grouped bars of SSIM and PSNR per (m, fusion), x8 blue on the left axis and x16 red on the
    right (the thesis's layout); a bar that is not its own model's (``how``) is hatched. The
    random-m model's rows stay in the CSV only (one bar per (scale, m, fusion)). None (and nothing
    written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in rows if r.how != HOW["random_m"]]
    labels = sorted({(r.m, r.fusion) for r in rows}, key=lambda k: (k[1] != "pwave", k[0]))
    names = [f"m={m}" if fusion == "pwave" else f"{fusion} m={m}" for m, fusion in labels]
    figure, panels = plt.subplots(1, 2, figsize=(11, 4))
    for panel, metric in zip(panels, ("ssim", "psnr"), strict=True):
        axes = {8: panel, 16: panel.twinx()}
        for offset, scale, colour in ((-0.2, 8, "tab:blue"), (0.2, 16, "tab:red")):
            for row in rows:
                if row.scale == scale:
                    axes[scale].bar(
                        labels.index((row.m, row.fusion)) + offset,
                        getattr(row, metric),
                        width=0.4,
                        color=colour,
                        hatch="" if row.how == HOW["own"] else "//",
                        edgecolor="white",
                    )
            axes[scale].set_ylabel(f"{metric.upper()} x{scale}", color=colour)
        panel.set_xticks(range(len(labels)), names, rotation=30)
        panel.set_title(f"{metric.upper()} (hatched: not its own model, see fig_6_8.csv)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
