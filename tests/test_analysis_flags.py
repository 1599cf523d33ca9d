"""The flags every analysis command shares, and its options dataclass built from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from experiments.analysis_output import analysis_parser, options_from


@dataclass(frozen=True)
class Options:
    root: Path
    prefix: str = "m/synthetic"
    sizes: tuple[int, ...] = (1,)
    seed: int = 0
    batch_size: int = 8
    progress: bool = True
    unset: str = "default"  # a field no flag sets keeps its default


def test_shared_flags_fill_the_options_and_no_progress_turns_progress_off():
    parser = analysis_parser("The command.\n\nMore text.", "m/synthetic", batch_size=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1])
    args = parser.parse_args(["--root", "r", "--sizes", "2", "3", "--no-progress", "--seed", "4"])
    options = options_from(Options, args, sizes=tuple(args.sizes))
    assert options == Options(root=Path("r"), sizes=(2, 3), seed=4, progress=False)
    assert parser.description == "The command."
    assert options_from(Options, parser.parse_args(["--root", "r"])).progress is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--prefix", "m/x"])  # --root is required
