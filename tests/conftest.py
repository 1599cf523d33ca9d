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
