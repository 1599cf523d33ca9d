"""LogRegionFeatures (MinMaxCAM Sec. 5.4 / Fig. 5.6) and the dispersion it reports."""

from __future__ import annotations

import math

import pytest
import torch
from lightning import LightningModule, Trainer
from recording import RecordingLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.minmaxcam.region_features import LogRegionFeatures, dispersion


def test_dispersion_hand_values():
    # class 0: unit vectors e1 and e2 -> mean (0.5, 0.5), distances sqrt(0.5) each
    # class 1: two identical directions -> 0
    features = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [2.0, 2.0]])
    mean, std = dispersion(features, torch.tensor([0, 0, 1, 1]))
    assert mean == pytest.approx(math.sqrt(0.5) / 2)
    assert std == pytest.approx(torch.tensor([math.sqrt(0.5), 0.0]).std().item())


class Regions(LightningModule):
    """Masked features: the class's one-hot direction; full features: that plus image noise."""

    def region_features(self, images, labels):
        masked = torch.nn.functional.one_hot(labels, 4).float() + 0.01 * images
        return masked, masked + images

    def test_step(self, batch, batch_idx):
        return None


def _loader(n: int = 24):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 4, generator=generator)
    labels = torch.arange(n) % 4
    return DataLoader(
        TensorDataset(images, labels), batch_size=8, collate_fn=_as_dict, shuffle=False
    )


def _as_dict(items):
    images, labels = zip(*items, strict=True)
    return {"image": torch.stack(images), "label": torch.stack(labels)}


def test_logs_dispersions_and_a_tsne(tmp_path):
    logger = RecordingLogger(str(tmp_path))
    callback = LogRegionFeatures(classes=[0, 2])
    trainer = Trainer(
        logger=logger, callbacks=[callback], enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path),
    )  # fmt: skip
    loader = _loader()
    trainer.test(Regions(), dataloaders=loader, verbose=False)
    images, labels = loader.dataset.tensors
    masked = torch.nn.functional.one_hot(labels, 4).float() + 0.01 * images
    for key, features in (("f", masked), ("fo", masked + images)):
        mean, std = dispersion(features, labels)
        assert callback.results[f"test/dispersion_{key}"] == pytest.approx(mean)
        assert callback.results[f"test/dispersion_{key}_std"] == pytest.approx(std)
    assert callback.results["test/dispersion_f"] < callback.results["test/dispersion_fo"]
    (call,) = logger.image_calls
    assert call["key"] == "test/tsne_region_features" and call["images"][0].size[0] > 100


def test_needs_region_features(tmp_path):
    class Plain(LightningModule):
        def test_step(self, batch, batch_idx):
            return None

    trainer = Trainer(
        logger=False, callbacks=[LogRegionFeatures()], enable_progress_bar=False,
        default_root_dir=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(TypeError, match="Plain.region_features"):
        trainer.test(Plain(), dataloaders=_loader(), verbose=False)
