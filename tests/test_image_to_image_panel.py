"""LogImageToImagePanel in a Trainer: the same items every epoch, side by side, key checks."""

from __future__ import annotations

import pytest
import torch
from lightning import LightningModule
from PIL import Image
from recording import RecordingLogger, fit_recorded
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from callbacks.image_to_image import LogImageToImagePanel, panel_rows
from callbacks.panels import image_table


class Pairs(Dataset):
    """10 items: an 8-px grey input and a 16-px colour target, seeded by the index."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {
            "low": torch.rand(1, 8, 8, generator=g),
            "high": torch.rand(3, 16, 16, generator=g),
            "id": f"img{i:02d}.png",
        }


class Upsampler(LightningModule):
    """Predicts the target plus a bias that changes with training (so epochs differ)."""

    evaluation_outputs = ("inputs", "preds", "target_images", "image_id")

    def __init__(self, tanh_range: bool = False) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.tanh_range = tanh_range

    def training_step(self, batch, batch_idx):
        return (self.bias - 1.0) ** 2

    def validation_step(self, batch, batch_idx):
        scale = (lambda x: 2 * x - 1) if self.tanh_range else (lambda x: x)
        return {
            "inputs": scale(batch["low"]),
            "preds": scale(batch["high"] + self.bias.detach()),
            "target_images": scale(batch["high"]),
            "image_id": list(batch["id"]),
        }

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.25)


def run(tmp_path, callback, module=None, epochs: int = 2) -> RecordingLogger:
    loader = DataLoader(Pairs(), batch_size=4)
    return fit_recorded(
        tmp_path, module or Upsampler(), callback, epochs,
        train_dataloaders=loader, val_dataloaders=loader,
    )  # fmt: skip


def test_same_items_every_epoch_input_output_target(tmp_path):
    callback = LogImageToImagePanel(num_images=3)
    logger = run(tmp_path, callback)
    # one table per validation epoch (the sanity check is skipped), titled by stage and epoch
    assert [c["key"] for c in logger.image_calls] == ["val/image_to_image"] * 2
    assert [c["caption"] for c in logger.image_calls] == [["val, epoch 0"], ["val, epoch 1"]]
    (table,) = logger.image_calls[-1]["images"]
    assert isinstance(table, Image.Image) and table.width > 3 * 100
    assert (tmp_path / "media" / "val_image_to_image_step2.png").is_file()
    # the first 3 items of the first batch of 4, in dataset order, each row input | output | target
    rows = callback.last_rows
    assert len(rows) == 3 and all(len(row) == 3 for row in rows)
    for i, (shown_input, shown_pred, shown_target) in enumerate(rows):
        item = Pairs()[i]
        expected_input = F.interpolate(item["low"][None], size=(16, 16), mode="nearest")[0]
        torch.testing.assert_close(shown_input, expected_input.expand(3, -1, -1))
        torch.testing.assert_close(shown_target, item["high"])
        bias = 0.75  # two SGD steps of lr 0.25 on (b - 1)^2 from b = 0: 0.5, then 0.75
        torch.testing.assert_close(shown_pred, (item["high"] + bias).clamp(0, 1))


def test_value_range_maps_tanh_images_back(tmp_path):
    callback = LogImageToImagePanel(num_images=2, value_range=(-1.0, 1.0))
    run(tmp_path, callback, Upsampler(tanh_range=True), epochs=1)
    torch.testing.assert_close(callback.last_rows[1][2], Pairs()[1]["high"])


def test_missing_column_is_named_at_setup(tmp_path):
    callback = LogImageToImagePanel(columns=["inputs", "preds", "fake"])
    with pytest.raises(ValueError, match=r"needs the step outputs \['fake'\]"):
        run(tmp_path, callback, epochs=1)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown output keys"):
        LogImageToImagePanel(columns=["inputs", "output"])
    with pytest.raises(ValueError, match="distinct"):
        LogImageToImagePanel(columns=["preds", "preds"])
    with pytest.raises(ValueError, match="low < high"):
        LogImageToImagePanel(value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="num_images"):
        LogImageToImagePanel(num_images=0)


def test_panel_rows_and_table_shapes():
    columns = {"inputs": torch.zeros(2, 3, 4, 4), "preds": torch.ones(2, 1, 8, 6)}
    rows = panel_rows(columns)
    assert [tuple(x.shape) for x in rows[0]] == [(3, 8, 6), (3, 8, 6)]
    with pytest.raises(ValueError, match=r"'preds' must be \(N, 1 or 3, H, W\)"):
        panel_rows({"preds": torch.zeros(2, 2, 8, 8)})
    table = image_table(rows, ["input", "output"], ["a", "b"])
    assert isinstance(table, Image.Image)
    with pytest.raises(ValueError, match="one per column"):
        image_table(rows, ["input"])
