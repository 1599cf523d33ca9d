"""Paper configurations that start from pretrained weights refuse to start without their file,
unless random initialisation is asked for, which the run's record then says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_runs import FAST, REPO, data_flags

from experiments.__main__ import main
from lightning_modules.components.backbones import create_backbone
from lightning_modules.components.pretrained import WeightsNotFoundError, manifest_entry
from lightning_modules.minmaxcam import MinMaxCAM

CELEBA = REPO / "experiments" / "face_attributes" / "celeba.yaml"
SMALL = [  # the synthetic twin at 32 px: the paper's network, a few seconds on a CPU
    "--data.init_args.source.init_args.image_size=32",
    "--data.init_args.target.init_args.image_size=32",
    "--data.init_args.source.init_args.randaugment=false",
]


def celeba_args(data_root: Path, run_root: Path) -> list[str]:
    base = str(REPO / "experiments" / "_base.yaml")
    flags = [*data_flags(data_root), *SMALL, f"--run.root={run_root}", *FAST]
    flags.append("--trainer.max_epochs=1")
    return ["run", "--config", base, "--config", str(CELEBA), *flags]


def test_celeba_names_its_manifest_file():
    init_args = yaml.safe_load(CELEBA.read_text())["model"]["init_args"]
    assert init_args["weights_file"] == "seresnext101_32x4d"
    assert init_args["random_init"] is False


def test_celeba_refuses_to_start_without_its_weights(
    synthetic_faces_root, tmp_path, monkeypatch, capsys, restore_global_state
):
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(SystemExit) as exit_info:
        main(celeba_args(synthetic_faces_root, tmp_path / "runs"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    expected = tmp_path / "weights" / "seresnext101_32x4d.gluon_in1k.safetensors"
    assert "\nerror: pretrained file 'seresnext101_32x4d'" in f"\n{err}"
    assert f"not found at {expected}" in err and "Traceback" not in err
    assert "make weights DOWNLOAD=1 NAMES=seresnext101_32x4d" in err
    assert 'ARGS="--model.init_args.random_init=true"' in err


def test_celeba_with_random_init_starts_and_records_it(
    synthetic_faces_root, tmp_path, monkeypatch, restore_global_state
):
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path / "weights"))
    args = celeba_args(synthetic_faces_root, tmp_path / "runs")
    with pytest.warns(UserWarning, match="random_init=True: random initialisation .*not loaded"):
        main([*args, "--model.init_args.random_init=true"])
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    init_args = yaml.safe_load(config.read_text())["model"]["init_args"]
    assert init_args["random_init"] is True
    assert init_args["weights_file"] == "seresnext101_32x4d"
    hparams = [yaml.safe_load(p.read_text()) for p in (tmp_path / "runs").rglob("hparams.yaml")]
    assert hparams and all(h["random_init"] is True for h in hparams)


@pytest.mark.parametrize(
    "path", sorted((REPO / "experiments" / "minmaxcam").glob("cub_*.yaml")), ids=lambda p: p.stem
)
def test_minmaxcam_paper_configs_name_their_manifest_file(path):
    init_args = yaml.safe_load(path.read_text())["model"]["init_args"]
    manifest_entry(init_args["weights_file"])  # a key of the manifest
    assert init_args["random_init"] is False


def test_minmaxcam_refuses_a_missing_file_unless_random_init(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="resnet50-19c8e357.pth.*random_init: true"):
        MinMaxCAM(backbone="resnet50", weights_file="resnet50")
    with pytest.warns(UserWarning, match="random_init=True"):
        model = MinMaxCAM(backbone="resnet50", weights_file="resnet50", random_init=True)
    assert model.hparams.random_init is True


def test_a_checkpoint_loads_without_its_pretrained_file_when_asked(tmp_path):
    """``load_from_checkpoint(path, random_init=True)`` rebuilds a module trained from a file that
    is not on this machine: the checkpoint holds every weight."""
    import lightning
    import torch

    from lightning_modules.face_attributes import FaceAttributeClassifier

    tiny = {"channels": [8, 16, 32, 64], "stem_width": 8}
    start = tmp_path / "imagenet-start.pth"
    torch.save(create_backbone("resnet10t", 1000, model_kwargs=tiny).state_dict(), start)
    model = FaceAttributeClassifier("resnet10t", 4, weights_file=str(start), model_kwargs=tiny)
    checkpoint = tmp_path / "model.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        checkpoint,
    )
    start.unlink()
    with pytest.raises(WeightsNotFoundError, match="imagenet-start.pth"):
        FaceAttributeClassifier.load_from_checkpoint(checkpoint, weights_only=True)
    with pytest.warns(UserWarning, match="random_init=True"):
        restored = FaceAttributeClassifier.load_from_checkpoint(
            checkpoint, random_init=True, weights_only=True
        )
    for key, value in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value, equal_nan=True)
