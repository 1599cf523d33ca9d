"""Every hint in a data error is a command that works as written.

Each ``make data ...`` hint is run through the Makefile as a dry run (``make -n``): the command it
would run must be ``python -m datamodules.prepare`` with the dataset, the root the DataModule reads
and, where the hint promises a download, ``--download``. Each ``--data.init_args.<name>=`` flag
must name an argument of the DataModule that raised.
"""

from __future__ import annotations

import inspect
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.io import write_png

import datamodules.formats.mnist as mnist_format
from datamodules.celeba import CelebADataModule
from datamodules.cub import CUBDataModule, prepare_cub
from datamodules.ffhq import FFHQDataModule
from datamodules.formats.errors import DatasetNotFoundError
from datamodules.formats.ffhq import image_relpath
from datamodules.mnist_bags import MNISTBagsDataModule
from datamodules.paths import resolve_root
from datamodules.prepare import build_parser
from datamodules.prepare import main as prepare

REPO = Path(__file__).resolve().parents[1]
MAKE_HINT = re.compile(r"`(make data [^`]*)`")
FLAG = re.compile(r"--data\.init_args\.(\w+)=")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def prepare_argv(command: str, tmp_path: Path) -> list[str]:
    """The arguments ``command`` (a ``make data ...`` line) passes to ``datamodules.prepare``."""
    venv = tmp_path / "no_venv"  # a dry run: make prints the install steps, runs nothing
    dry = subprocess.run(
        ["make", "-n", "-s", "-C", str(REPO), *shlex.split(command)[1:], f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    run = f"{venv}/bin/python -m datamodules.prepare "
    line = next(line for line in dry.splitlines() if line.startswith(run))
    return shlex.split(line.removeprefix(run))


def hints(error: BaseException, tmp_path: Path, datamodule: type) -> list:
    """Parsed ``make data`` hints of ``error``; its ``--data.init_args`` flags must exist."""
    message = str(error)
    parameters = inspect.signature(datamodule.__init__).parameters
    for name in FLAG.findall(message):
        assert name in parameters, f"{name} is not a {datamodule.__name__} argument: {message}"
    commands = MAKE_HINT.findall(message)
    assert commands, message
    return [build_parser().parse_args(prepare_argv(c, tmp_path)) for c in commands]


def test_missing_mnist_hint_downloads_into_the_root_the_run_reads(tmp_path, monkeypatch):
    root = tmp_path / "mnist"
    with pytest.raises(DatasetNotFoundError) as error:
        MNISTBagsDataModule(root=str(root)).setup("fit")
    parsed = hints(error.value, tmp_path, MNISTBagsDataModule)
    mnist = [args for args in parsed if args.dataset == "mnist"]
    assert {Path(args.root) for args in mnist} == {root}
    download = [args for args in mnist if args.download]
    assert download, "no hint downloads"
    fetched = []
    monkeypatch.setattr(mnist_format, "download_mnist", lambda folder: fetched.append(folder) or {})
    download[0].run(download[0])  # what `make data ... DOWNLOAD=1` runs
    assert fetched == [root]


def test_missing_mnist_hint_from_make_data_itself(tmp_path):
    root = tmp_path / "mnist"
    with pytest.raises(DatasetNotFoundError) as error:
        prepare(["mnist", "--root", str(root)])
    assert any(args.download for args in hints(error.value, tmp_path, MNISTBagsDataModule))


def test_missing_cub_hint_downloads_into_the_root_the_run_reads(tmp_path):
    root = tmp_path / "cub"
    for attempt in (lambda: CUBDataModule(root=str(root)).setup("fit"), lambda: prepare_cub(root)):
        with pytest.raises(DatasetNotFoundError) as error:
            attempt()
        parsed = hints(error.value, tmp_path, CUBDataModule)
        assert {Path(args.root) for args in parsed} == {root}
        assert any(args.download for args in parsed)


def test_missing_cubv2_hint_names_a_real_option(tmp_path):
    (tmp_path / "CUB_200_2011" / "images").mkdir(parents=True)
    (tmp_path / "metadata" / "CUB" / "train").mkdir(parents=True)
    (tmp_path / "metadata" / "CUB" / "train" / "image_ids.txt").write_text("")
    with pytest.raises(DatasetNotFoundError, match="val_split=train_holdout") as error:
        CUBDataModule(root=str(tmp_path)).setup("fit")
    value = FLAG.search(str(error.value))
    assert value and value[1] in inspect.signature(CUBDataModule.__init__).parameters


def test_missing_celeba_hint_checks_the_root_the_run_reads(tmp_path):
    root = tmp_path / "celeba"
    with pytest.raises(DatasetNotFoundError) as error:
        CelebADataModule(root=str(root)).setup("fit")
    parsed = hints(error.value, tmp_path, CelebADataModule)
    assert [Path(args.root) for args in parsed if args.dataset == "celeba"] == [root]
    assert [args.dataset for args in parsed] == ["celeba", "synthetic-faces"]


def test_ffhq_cache_hints_rebuild_the_cache_the_run_reads(tmp_path):
    root = tmp_path / "ffhq"
    for index in (0, 1, 1000):
        path = root / image_relpath(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(torch.full((3, 20, 20), index % 251, dtype=torch.uint8), str(path))

    def setup():
        FFHQDataModule(root=str(root), cache_res=8, num_workers=0).setup("fit")

    with pytest.raises(DatasetNotFoundError) as missing:
        setup()
    (args,) = hints(missing.value, tmp_path, FFHQDataModule)
    args.run(args)  # what the hint's make command runs
    setup()
    (root / "cache_8" / "01000" / "01000.png").unlink()  # a cache that lost an image
    with pytest.raises(FileNotFoundError) as incomplete:
        setup()
    (args,) = hints(incomplete.value, tmp_path, FFHQDataModule)
    args.run(args)
    setup()


def test_readme_data_commands_run_as_written(tmp_path):
    """The README speaks to users, who have no ../shared; its `make data` lines parse as written."""
    readme = (REPO / "README.md").read_text()
    assert "../shared" not in readme
    commands = [c for c in MAKE_HINT.findall(readme) if "<" not in c]  # <name>: a placeholder
    assert any("DATASET=mnist DOWNLOAD=1" in c for c in commands)
    for command in commands:
        args = build_parser().parse_args(prepare_argv(re.sub(r"[\[\]]", "", command), tmp_path))
        assert args.dataset in command
        if "DOWNLOAD=1" in command:
            assert args.download


def test_mnist_experiments_say_where_their_data_comes_from(tmp_path, monkeypatch):
    """An experiment that reads the default MNIST root says, in its header, how to fill it."""
    monkeypatch.delenv("LATENTLAB_DATA", raising=False)
    readers = []
    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        data = config.get("data") or {}
        if data.get("class_path") != "datamodules.mnist_bags.MNISTBagsDataModule":
            continue
        if (data.get("init_args") or {}).get("root") is not None:
            continue
        readers.append(path)
        header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        (command,) = MAKE_HINT.findall(header)
        args = build_parser().parse_args(prepare_argv(command, tmp_path))
        assert args.download, f"{path}: {command} downloads nothing"
        assert resolve_root(args.root, "mnist") == resolve_root(None, "mnist"), path
        assert "--data.init_args.root=" in header, path
    assert len(readers) > 40


def test_a_data_error_is_one_message_whose_flags_reach_the_nested_module(tmp_path, capsys):
    """The face-attribute experiments nest CelebA under `source`: the hint's flag must say so, and
    the command ends with the message (no traceback) and exit code 2."""
    from experiments.__main__ import main

    repo = Path(__file__).resolve().parents[1]
    args = [
        "run", "--config", str(repo / "experiments" / "_base.yaml"),
        "--config", str(repo / "experiments" / "face_attributes" / "celeba_64px.yaml"),
        f"--data.init_args.source.init_args.root={tmp_path / 'nothing'}",
        f"--run.root={tmp_path / 'runs'}", "--trainer.accelerator=cpu",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "\nerror: CelebA not found" in f"\n{err}" and "Traceback" not in err
    flags = re.findall(r"--data\.init_args\.[\w.]+=", err)
    assert flags and all(f.startswith("--data.init_args.source.init_args.") for f in flags)


def test_a_class_set_larger_than_the_classes_is_one_message(tmp_path, capsys):
    """N x m batches of more classes than the training split holds: the run stops at setup with
    the flag and a value that works (exit 2, no traceback), and leaves no run folder."""
    from datamodules.synthetic.birds import make_synthetic_cub
    from experiments.__main__ import main

    root = make_synthetic_cub(tmp_path / "birds", 3, (4, 1, 1), (40, 48), seed=0)
    repo = Path(__file__).resolve().parents[1]
    args = [
        "run", "--config", str(repo / "experiments" / "_base.yaml"),
        "--config", str(repo / "experiments" / "minmaxcam" / "synthetic.yaml"),
        f"--data.init_args.root={root}", "--model.init_args.num_classes=3",
        f"--run.root={tmp_path / 'runs'}", "--trainer.logger=false",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "\nerror: --data.init_args.classes_per_batch=10 but the training split has only 3" in (
        f"\n{err}"
    )
    assert not list((tmp_path / "runs").rglob("*"))
