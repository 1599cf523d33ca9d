"""``check_datamodule``: the module-data agreement check every method runs at setup."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning import LightningModule

from lightning_modules.components.data_checks import check_datamodule


def _module_with(datamodule) -> LightningModule:
    module = LightningModule()
    module.trainer = SimpleNamespace(datamodule=datamodule)
    return module


def test_agreeing_facts_pass_and_lists_equal_tuples():
    data = SimpleNamespace(num_classes=200, attribute_names=["a", "b"])
    check_datamodule(_module_with(data), {"num_classes": 200, "attribute_names": ("a", "b")})


def test_a_different_value_names_both_sides():
    data = SimpleNamespace(num_classes=10)
    with pytest.raises(ValueError, match=r"num_classes=200 but SimpleNamespace has 10"):
        check_datamodule(_module_with(data), {"num_classes": 200})


def test_a_missing_fact_is_an_error_not_a_pass():
    with pytest.raises(ValueError, match="does not expose `samples_per_class`"):
        check_datamodule(_module_with(SimpleNamespace()), {"samples_per_class": 5})


def test_without_a_datamodule_there_is_nothing_to_check():
    check_datamodule(_module_with(None), {"num_classes": 200})
