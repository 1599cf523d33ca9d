"""`make list` lists every experiment with its header; an unknown NAME gets the closest names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.listing import check, experiment_names, header, listing, main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
SHIPPED = sorted(
    p.relative_to(EXPERIMENTS).with_suffix("").as_posix()
    for p in EXPERIMENTS.rglob("*.yaml")
    if p.relative_to(EXPERIMENTS).parts[0] not in ("sweeps", "cluster") and p.name != "_base.yaml"
)


def test_every_experiment_is_listed_with_its_header():
    assert experiment_names() == SHIPPED and len(SHIPPED) > 10
    text = listing()
    lines = text.splitlines()
    for name in SHIPPED:
        first = (EXPERIMENTS / f"{name}.yaml").read_text().splitlines()[0].lstrip("#").strip()
        assert header(EXPERIMENTS / f"{name}.yaml").startswith(first)
        (line,) = [x for x in lines if x.split() and x.split()[0] == name]
        method = name.split("/")[0]
        heading = next(x for x in lines if x.startswith(f"{method}"))
        # the header's sentence, its shared opening printed once in the method's heading
        shown = heading.partition(": ")[2] + ", " + line.split(maxsplit=1)[1]
        assert header(EXPERIMENTS / f"{name}.yaml") in (shown, line.split(maxsplit=1)[1])
    listed = [x.split()[0] for x in lines if x.startswith("  ")]
    assert listed == SHIPPED  # not _base.yaml, sweeps/ or cluster/


def test_grouped_by_method():
    lines = listing().splitlines()
    methods = [x.split(":")[0] for x in lines if x and not x.startswith(" ") and "/" not in x]
    assert methods == sorted({n.split("/")[0] for n in SHIPPED})


def test_unknown_name_suggests_the_closest():
    message = check("minmaxcam/synthtic")
    assert message is not None
    assert message.startswith("No experiments/minmaxcam/synthtic.yaml. Closest: ")
    assert message.partition("Closest: ")[2].startswith("minmaxcam/synthetic")
    assert "`make list`" in message
    assert check("minmaxcam/synthetic") is None


def test_check_exit_codes(capsys):
    assert main(["--check", "face_attributes/synthetic"]) == 0
    assert main(["--check", "face_atributes/synthetic"]) == 2
    assert "Closest: face_attributes/synthetic" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="make")
def test_make_experiment_with_an_unknown_name_points_to_make_list(tmp_path):
    venv = Path(sys.executable).parents[1]  # the make targets' install step is already done
    make = ["make", "-s", f"VENV={venv}", "-o", f"{venv}/.installed", "-C", str(REPO)]
    done = subprocess.run([*make, "check-name", "NAME=minmaxcam/synthtic"], capture_output=True)
    assert done.returncode != 0
    assert b"Closest: minmaxcam/synthetic" in done.stderr and b"make list" in done.stderr
    listed = subprocess.run([*make, "list"], capture_output=True, text=True, check=True)
    assert "minmaxcam/synthetic " in listed.stdout
    helped = subprocess.run([*make, "help"], capture_output=True, text=True, check=True)
    assert "make list" in helped.stdout and "list" in helped.stdout.split()
