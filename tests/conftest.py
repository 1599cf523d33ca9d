"""Shared fixtures. Every test runs offline, on CPU, with W&B disabled."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def synthetic_faces_root(tmp_path_factory):
    """The ``tiny`` synthetic-faces preset (CelebA + FFHQ layouts), written once per session."""
    from datamodules.synthetic.faces import write_synthetic_faces

    root = tmp_path_factory.mktemp("synthetic_faces")
    write_synthetic_faces(root, preset="tiny", seed=0)
    return root


@pytest.fixture
def experiment_args(synthetic_faces_root, tmp_path):
    """Config + overrides for one fast CLI run whose run root is ``tmp_path / 'runs'``."""
    from cli_runs import experiment_args

    return experiment_args(synthetic_faces_root, tmp_path / "runs")


@pytest.fixture
def restore_global_state():
    """The CLI seeds, may switch deterministic algorithms on: undo both after the test."""
    deterministic, rng = torch.are_deterministic_algorithms_enabled(), torch.get_rng_state()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_rng_state(rng)


@pytest.fixture(scope="session")
def exemplar_faces_root(tmp_path_factory):
    """The ``tiny`` exemplar-faces twin (CelebA layout with the region sidecar), written once."""
    from datamodules.synthetic.exemplar_faces import make_exemplar_faces

    root = tmp_path_factory.mktemp("exemplar_faces")
    make_exemplar_faces(root, preset="tiny", seed=0)
    return root


@pytest.fixture(scope="session")
def viton_twin_root(tmp_path_factory):
    """The ``tiny`` VITON twin, written and cleaned once by the DataModule's ``synthetic`` option
    (tests that corrupt files do so in a copy)."""
    from datamodules.viton import VitonDataModule

    root = tmp_path_factory.mktemp("viton_twin") / "viton"
    VitonDataModule(root=str(root), synthetic="tiny").prepare_data()
    return root
