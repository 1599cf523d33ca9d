"""OLR's probe and reconstruction stages log under two gloo processes what one process logs.

Uneven shares (9 test items: 5 and 4; 9 train items for the mean image: 5 and 4): the label
accuracy, the majority baseline, the losses and the mean-image baseline are exact item-weighted
epoch means, and the mean train image is summed over the ranks' shards (``ddp_spawn``).
"""

from __future__ import annotations

import pytest
import torch
from test_ddp_logging import Shards, assert_same_as_one_process
from torch.utils.data import DataLoader

from lightning_modules.olr.probe_module import OLRLinearProbe
from lightning_modules.olr.reconstructor import OLRReconstructor

pytestmark = pytest.mark.slow

ITEMS, LABELS, SIZE = 9, 4, 24


def _items(seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.rand(3, SIZE, SIZE, generator=g),
            "attributes": (torch.rand(LABELS, generator=g) < 0.4).float(),
        }
        for _ in range(ITEMS)
    ]


class WithTrain(Shards):
    """``Shards`` for evaluation, plus the train split a stage reads at setup."""

    def __init__(self) -> None:
        super().__init__(_items(0), batch_size=2, num_attributes=LABELS)
        self.train_items = _items(1)
        self.train_attributes = torch.stack([i["attributes"] for i in self.train_items])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_items, batch_size=2)


def _probe() -> OLRLinearProbe:
    torch.manual_seed(0)
    return OLRLinearProbe(num_labels=LABELS, embedding_dim=2, widths=[4])


def _reconstructor() -> OLRReconstructor:
    torch.manual_seed(0)
    return OLRReconstructor(
        num_labels=LABELS, embedding_dim=2, widths=[4], image_size=SIZE, channels=4
    )


def test_probe_accuracy_and_majority_baseline(tmp_path):
    alone = assert_same_as_one_process(tmp_path, _probe, WithTrain(), "test", rel=1e-6)
    assert {"test/loss", "test/accuracy", "test/majority_accuracy"} <= set(alone)


def test_reconstructor_losses_and_mean_image_baseline(tmp_path):
    alone = assert_same_as_one_process(tmp_path, _reconstructor, WithTrain(), "test", rel=1e-6)
    assert {"test/loss", "test/mse", "test/ssim_mean_image", "test/mse_mean_image"} <= set(alone)
