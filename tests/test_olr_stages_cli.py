"""The two OLR stage YAMLs through the real CLI on the tiny synthetic twin: the teacher run, then
the Siamese run that loads it with ``run.init_from`` (``experiments/olr/synthetic_*.yaml``).

Kept apart from ``tests/methods``: an in-process CLI run collected before ``tests/test_cli.py``
changes what its first test sees of W&B.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_modules.olr.embedding_writer import load_embeddings

K = 8  # embedding_dim of experiments/olr/synthetic_siamese.yaml


def stage_args(name: str, data_root: Path, run_root: Path) -> list[str]:
    from cli_runs import FAST, REPO

    return [
        *("--config", str(REPO / "experiments" / "_base.yaml")),
        *("--config", str(REPO / "experiments" / "olr" / f"{name}.yaml")),
        f"--data.init_args.root={data_root / 'celeba'}",
        "--data.init_args.synthetic=null",
        "--data.init_args.train_count=300",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
        f"--run.root={run_root}",
        *[flag for flag in FAST if "max_epochs" not in flag],
        "--trainer.max_epochs=1",
    ]


def test_teacher_then_siamese_yaml_runs(synthetic_faces_root, tmp_path, restore_global_state):
    """olr/synthetic_teacher, then olr/synthetic_siamese loading it with run.init_from: the
    Siamese run's teacher holds the classifier's weights; embeddings_<split>.pt are written."""
    from cli_runs import run_cli

    runs = tmp_path / "runs"
    run_cli(
        ["fit", "--run.evaluate=true", *stage_args("synthetic_teacher", synthetic_faces_root, runs)]
    )
    cli = run_cli(
        ["fit", "--run.evaluate=true", *stage_args("synthetic_siamese", synthetic_faces_root, runs)]
    )
    (teacher_ckpt,) = (runs / "olr" / "synthetic_teacher").glob("*/checkpoints/last.ckpt")
    state = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in cli.model.teacher.state_dict().items():
        assert torch.equal(value, state[f"model.{name}"]), name
    (run_dir,) = (runs / "olr" / "synthetic_siamese").glob("*")
    test = load_embeddings(run_dir / "embeddings_test.pt")
    assert test["embeddings"].shape[1:] == (38, K)
    assert len(test["image_id"]) == len(test["embeddings"]) > 0  # (the FAST flags cut predict)
