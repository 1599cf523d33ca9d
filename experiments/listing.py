"""Every experiment by method, with what its header says it runs (``make list``); close names.

An experiment is ``experiments/<method>/<name>.yaml`` (``_base.yaml``, ``sweeps/`` and
``cluster/`` are not). Its line shows the first sentence of its header comment: the comment lines
before ``# Expected:``, starting with the header's first line. The opening clauses that all but at
most one experiment of a method share (the paper's citation) are printed once, after the method.

    python -m experiments.listing                # make list
    python -m experiments.listing --check NAME   # make experiment's check: exit 2 with close names
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections import Counter
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent
NOT_EXPERIMENTS = ("sweeps", "cluster")


def experiment_names(root: Path = EXPERIMENTS) -> list[str]:
    """``<method>/<name>`` of every experiment under ``root``, sorted."""
    return sorted(
        p.relative_to(root).with_suffix("").as_posix()
        for p in root.glob("*/*.yaml")
        if p.parent.name not in NOT_EXPERIMENTS
    )


def header(path: Path) -> str:
    """The first sentence of ``path``'s header comment: its lines before ``# Expected:``."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("# Expected:"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(line for line in lines if line)


def shared_opening(texts: list[str]) -> str:
    """The longest run of leading ``", "``-clauses that all but at most one of ``texts`` (when
    there are three or more) start with, ending with its comma; ``""`` if none."""
    if len(texts) < 2:
        return ""
    need = len(texts) - (1 if len(texts) >= 3 else 0)
    first_clauses = Counter(t.split(", ")[0] for t in texts).most_common(1)[0][0]
    model = next(t for t in texts if t.split(", ")[0] == first_clauses).split(", ")
    best = ""
    for k in range(1, len(model)):
        opening = ", ".join(model[:k]) + ","
        if sum(t.startswith(opening + " ") for t in texts) >= need:
            best = opening
    return best


def listing(root: Path = EXPERIMENTS) -> str:
    """The text of ``make list``: per method, each experiment's NAME and its header sentence."""
    names = experiment_names(root)
    width = max((len(n) for n in names), default=0)
    out = []
    for method in sorted({n.split("/")[0] for n in names}):
        mine = [n for n in names if n.startswith(method + "/")]
        texts = {n: header(root / f"{n}.yaml") for n in mine}
        opening = shared_opening(list(texts.values()))
        out.append(f"{method}" + (f": {opening.rstrip(',')}" if opening else ""))
        for name in mine:
            text = texts[name].removeprefix(opening + " ") if opening else texts[name]
            out.append(f"  {name:<{width}}  {text}".rstrip())
        out.append("")
    out.append("Run one: make experiment NAME=<method>/<name>")
    return "\n".join(out)


def closest(name: str, names: list[str], n: int = 3) -> list[str]:
    """The ``n`` names most like ``name``, compared whole and by the part after ``/``."""

    def score(candidate: str) -> tuple[float, float]:
        whole = difflib.SequenceMatcher(None, name, candidate).ratio()
        short = name.rpartition("/")[2]
        part = difflib.SequenceMatcher(None, short, candidate.rpartition("/")[2]).ratio()
        return max(whole, part), whole  # ties: the one whose method matches too

    ranked = sorted(names, key=lambda c: (tuple(-x for x in score(c)), c))
    return [c for c in ranked[:n] if score(c)[0] >= 0.6]


def check(name: str, root: Path = EXPERIMENTS) -> str | None:
    """None if ``name`` is an experiment, else the message: the closest names and ``make list``."""
    names = experiment_names(root)
    if name in names:
        return None
    if not name:
        return "Set NAME=<method>/<name>; `make list` lists the experiments."
    close = closest(name, names)
    hint = f" Closest: {', '.join(close)}." if close else ""
    return f"No experiments/{name}.yaml.{hint} `make list` lists every experiment."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.listing", description=__doc__)
    parser.add_argument("--check", metavar="NAME", help="exit 2 (with close names) if no NAME")
    args = parser.parse_args(argv)
    if args.check is None:
        print(listing())
        return 0
    message = check(args.check)
    if message is not None:
        print(message, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
