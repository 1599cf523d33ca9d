"""LogAttributePanel and the shared plot helpers (bar chart, captioned grid)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from lightning import LightningDataModule, LightningModule, Trainer
from PIL import Image
from recording import RecordingLogger, fit_recorded
from torch.utils.data import DataLoader, Dataset

from callbacks.panels import attribute_bar_chart, captioned_grid
from lightning_modules.face_attributes.attribute_panel import LogAttributePanel

NAMES = ["Smiling", "Male", "Eyeglasses", "Bald", "Wearing_Hat"]


class Faces(Dataset):
    """12 random 3x16x16 images; attribute j of image i is on when (i >> j) & 1."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        bits = torch.tensor([(i >> j) & 1 for j in range(5)], dtype=torch.float32)
        return {"image": torch.rand(3, 16, 16, generator=g), "attributes": bits}


class Predictor(LightningModule):
    """Predicts the true attributes except that column 0 ("Smiling") is always predicted on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen_training_mode: list[bool] = []

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.seen_training_mode.append(self.training)
        index = self._index(image)
        bits = torch.stack([(index >> j) & 1 for j in range(5)], 1).float()
        bits[:, 0] = 1.0
        return (bits * 8 - 4) + self.weight

    def _index(self, image: torch.Tensor) -> torch.Tensor:
        # recover each image's dataset index from its seeded pixels
        table = torch.stack([Faces()[i]["image"] for i in range(12)]).flatten(1)
        return torch.cdist(image.flatten(1).float(), table).argmin(1)

    def training_step(self, batch, batch_idx):
        return self(batch["image"]).mean()

    def validation_step(self, batch, batch_idx):
        return {"logits": self(batch["image"]), "target": batch["attributes"]}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class FaceData(LightningDataModule):
    attribute_names = NAMES
    image_mean = [0.0, 0.0, 0.0]
    image_std = [1.0, 1.0, 1.0]

    def train_dataloader(self):
        return DataLoader(Faces(), batch_size=4)

    def val_dataloader(self):
        return DataLoader(Faces(), batch_size=8)


def fit(
    tmp_path, callback: LogAttributePanel, epochs: int = 2
) -> tuple[RecordingLogger, Predictor]:
    module = Predictor()
    return fit_recorded(tmp_path, module, callback, epochs, datamodule=FaceData()), module


def test_panel_is_logged_with_true_and_predicted_names(tmp_path):
    callback = LogAttributePanel(num_images=6, max_attributes_in_caption=6)
    logger, module = fit(tmp_path, callback)
    # two validation epochs, the sanity check is skipped
    assert [call["key"] for call in logger.image_calls] == ["val/attribute_panel"] * 2
    (grid,) = logger.image_calls[-1]["images"]
    assert isinstance(grid, Image.Image) and grid.width > 300 and grid.height > 200
    assert len(callback.last_captions) == 6
    for i, caption in enumerate(callback.last_captions):
        true_line, pred_line = caption.split("\n")
        true_names = [NAMES[j] for j in range(5) if (i >> j) & 1]
        for name in true_names:
            assert name in true_line
        # Smiling is predicted for every image: an error (marked *) where it is not true
        smiling_mark = "Smiling" if i & 1 else "Smiling*"
        assert pred_line.split(": ")[1].split(", ")[0] == smiling_mark
        if not true_names:
            assert true_line == "T: (none)"
    assert callback.last_captions[3] == "T: Smiling, Male\nP: Smiling, Male"
    assert module.seen_training_mode[-1] is False  # forward ran in eval mode
    assert module.training  # and the module was put back in training mode


def test_every_n_epochs_and_caption_truncation(tmp_path):
    callback = LogAttributePanel(num_images=8, every_n_epochs=2, max_attributes_in_caption=2)
    logger, _ = fit(tmp_path, callback, epochs=3)
    # the suite's epoch rule: after epoch 1 ((1 + 1) % 2 == 0) and after the last epoch (2)
    steps = [call["step"] for call in logger.image_calls]
    assert steps == [2, 3]  # one training batch per epoch
    # image 7 has Smiling, Male, Eyeglasses on: two names shown, then "+1 more"
    assert callback.last_captions[7].split("\n")[0] == "T: Smiling, Male, +1 more"


def test_no_logger_logs_nothing_and_writes_nothing(tmp_path):
    callback = LogAttributePanel()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        logger=False,
        callbacks=[callback],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Predictor(), datamodule=FaceData())
    assert callback.last_captions == [] and not list(tmp_path.rglob("*.png"))


def test_attribute_bar_chart_draws_undefined_bars_grey():
    names = [f"attribute_{i:02d}" for i in range(40)]
    values = list(np.linspace(0.3, 1.0, 40))
    values[5] = math.nan
    chart = np.asarray(attribute_bar_chart(names, values, "AUROC", mean_line=0.7, ylim=(0, 1)))
    plain = np.asarray(attribute_bar_chart(names, [0.5] * 40, "AUROC", ylim=(0, 1)))
    assert chart.shape[1] > 900  # wide enough for 40 rotated labels
    grey = (np.abs(chart.astype(int) - 211).max(-1) <= 3).sum()  # matplotlib "lightgrey"
    assert grey > 200 and (np.abs(plain.astype(int) - 211).max(-1) <= 3).sum() < grey / 10
    with pytest.raises(ValueError, match="2 names but 1 values"):
        attribute_bar_chart(["a", "b"], [1.0], "x")


def test_captioned_grid_shapes_and_errors():
    images = torch.rand(5, 3, 12, 12)
    grid = captioned_grid(images, [f"image {i}\nline two" for i in range(5)])
    assert isinstance(grid, Image.Image) and grid.width > grid.height / 2
    single = captioned_grid([Image.new("RGB", (10, 10))], ["one"])
    assert single.width > 50
    with pytest.raises(ValueError, match="5 images but 2 captions"):
        captioned_grid(images, ["a", "b"])
