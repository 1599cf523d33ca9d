"""Spec check 6 (logged, not gating): do the class weights of eqs. 4-6 lift the rare attributes?

Runs one experiment twice, with ``weight_mode: class`` and ``weight_mode: none`` (same seed, data
and schedule), through the suite's own runner, then compares the mean predicted probability on the
test positives of the rare rendered attributes the spec names (``RARE``), read from each run's
``threshold_search.csv``.

    python -m experiments.face_attributes.class_weight_study          # synthetic.yaml, ~8 min
    python -m experiments.face_attributes.class_weight_study \
        --config experiments/face_attributes/synthetic_tiny.yaml      # seconds, pipeline only

Writes ``<root>/face_attributes/class_weight_study/<timestamp>/summary.md`` (and prints it).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from datamodules.synthetic.face_factors import ATTRIBUTE_SPECS

NAME = "face_attributes/class_weight_study"
MODES = ("class", "none")
#: The rare rendered attributes of specs/attributes.md (designed prevalence 4-8 %).
RARE = ("Wearing_Hat", "Blurry", "Pale_Skin", "Bald", "Mustache", "Eyeglasses")


def run_mode(config: str, mode: str, run_root: Path, extra: list[str]) -> Path:
    """Fit, test and label with ``weight_mode=mode``; return the run folder."""
    name = f"{NAME}/{mode}"
    command = [sys.executable, "-m", "experiments", "run", "--config", "experiments/_base.yaml"]
    command += ["--config", config, f"--model.init_args.weight_mode={mode}"]
    command += [f"--run.name={name}", f"--run.root={run_root}", *extra]
    subprocess.run(command, check=True)
    return max((run_root / name).glob("*/threshold_search.csv")).parent


def mean_positive_probability(run_dir: Path) -> dict[str, float]:
    """{attribute: mean predicted probability on its test positives} of one run."""
    with open(run_dir / "threshold_search.csv", newline="") as f:
        return {r["attribute"]: float(r["mean_prob_positive"] or "nan") for r in csv.DictReader(f)}


def summarize(weighted: dict[str, float], plain: dict[str, float], names: list[str]) -> str:
    """Markdown table and the verdict line."""
    lines = ["| attribute | prevalence | class weights | no weights | higher with weights |"]
    lines.append("|---|---|---|---|---|")
    wins = 0
    for n in names:
        higher = weighted[n] > plain[n]
        wins += higher
        prevalence = ATTRIBUTE_SPECS[n].prevalence
        lines.append(f"| {n} | {prevalence:.2f} | {weighted[n]:.3f} | {plain[n]:.3f} | {higher} |")
    lines.append(f"\nHigher with class weights on {wins} of {len(names)} rare rendered attributes.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/face_attributes/synthetic.yaml")
    parser.add_argument("--root", default="runs", help="folder of all runs")
    args, extra = parser.parse_known_args()
    root = Path(args.root)
    runs = {mode: run_mode(args.config, mode, root, extra) for mode in MODES}
    table = summarize(*(mean_positive_probability(runs[m]) for m in MODES), list(RARE))
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = root / NAME / stamp / "summary.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Class weights vs none ({args.config})\n\n{table}")
    print(table + f"\nwritten to {out}")


if __name__ == "__main__":
    main()
