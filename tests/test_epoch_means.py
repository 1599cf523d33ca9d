"""lightning_modules.components.epoch_means: item-weighted epoch means (one process)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.components.epoch_means import EpochMeans, WeightedMean


def test_weighted_mean_weighs_each_batch_by_its_items():
    mean = WeightedMean()
    assert float(mean(torch.tensor(2.0), 2)) == 2.0  # forward: this batch's value
    mean(torch.tensor(5.0), 1)
    assert float(mean.compute()) == 3.0  # (2 * 2 + 5 * 1) / 3, not (2 + 5) / 2


def test_a_nan_batch_makes_the_epoch_mean_nan():
    mean = WeightedMean()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(math.nan), 1)
    assert math.isnan(float(mean.compute()))


def test_epoch_means_refuse_undeclared_keys():
    means = EpochMeans(["val/loss"])
    with pytest.raises(KeyError, match="'val/error' was not declared"):
        means.log(None, {"val/error": torch.tensor(1.0)}, batch_size=1)


def test_epoch_means_are_not_saved_in_checkpoints():
    assert EpochMeans(["val/loss", "test/loss"]).state_dict() == {}
