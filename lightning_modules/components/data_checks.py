"""The one place where a LightningModule checks the DataModule it is given, at setup.

A DataModule exposes the facts a model must agree with as attributes or properties
(``num_classes``, ``attribute_names``, ``samples_per_class``, ``is_regression``, ...). A module
calls :func:`check_datamodule` from its ``setup(stage)`` with the values it was built with; any
disagreement, or a DataModule that does not expose a fact the module needs, raises a
``ValueError`` naming both sides before the first batch. Without a DataModule (plain dataloaders
passed to ``fit``) there is nothing to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning import LightningModule


def check_datamodule(module: LightningModule, expected: Mapping[str, Any]) -> None:
    """Raise unless ``trainer.datamodule.<name> == value`` for every ``name: value`` given.

    Args:
        module: The LightningModule, attached to a trainer (as in ``setup``).
        expected: The module's values of the facts it shares with the data, e.g.
            ``{"num_classes": self.hparams.num_classes}``.

    Raises:
        ValueError: The DataModule lacks one of the facts, or holds another value.
    """
    datamodule = getattr(module.trainer, "datamodule", None)
    if datamodule is None:
        return
    model_name, data_name = type(module).__name__, type(datamodule).__name__
    problems = []
    for name, value in expected.items():
        if not hasattr(datamodule, name):
            problems.append(f"{data_name} does not expose `{name}` (the model has {value!r})")
            continue
        found = getattr(datamodule, name)
        if _normalise(found) != _normalise(value):
            problems.append(f"{model_name} has {name}={value!r} but {data_name} has {found!r}")
    if problems:
        raise ValueError("The model does not fit the data: " + "; ".join(problems))


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value
