"""LightningModules and LightningDataModules nested in the ``model`` or ``data`` config record their
own hyperparameters.

LightningCLI builds every LightningModule (LightningDataModule) of the config with the whole
``model`` (``data``) config as the hyperparameters that ``save_hyperparameters()`` records, so that
``load_from_checkpoint`` can rebuild the outer one. A module nested in another (the ``source`` and
``target`` datamodules of a label-transfer datamodule, a teacher inside a student) would then
record its parent's config. :func:`nested_instantiators` returns jsonargparse instantiators that
build the nested classes plainly; the outer ones keep Lightning's.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import Namespace
from lightning import LightningDataModule, LightningModule

from experiments.loggers import import_class

__all__ = ["nested_instantiators", "nested_lightning_classes"]

LIGHTNING_CLASSES = (LightningModule, LightningDataModule)


def _class_paths(node: Any) -> list[str]:
    """The ``class_path`` of every ``{class_path: ...}`` mapping inside ``node``."""
    if isinstance(node, Namespace):
        node = node.as_dict()
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            found.append(node["class_path"])
        for value in node.values():
            found += _class_paths(value)
    elif isinstance(node, list | tuple):
        for value in node:
            found += _class_paths(value)
    return found


def nested_lightning_classes(config: Namespace, keys: tuple[str, ...] = ("model", "data")) -> set:
    """The Lightning(Data)Module classes nested inside ``config[key]`` for ``key`` in ``keys``.

    Raises:
        ValueError: when a nested class is also the outer class of ``model`` or ``data`` (an
            instantiator chosen by class cannot tell them apart).
    """
    outer, nested = set(), set()
    for key in keys:
        node = config.get(key)
        if not isinstance(node, Namespace) or "class_path" not in node:
            continue
        outer.add(import_class(node.class_path))
        for path in _class_paths(node.get("init_args")) + _class_paths(node.get("dict_kwargs")):
            cls = import_class(path)
            if isinstance(cls, type) and issubclass(cls, LIGHTNING_CLASSES):
                nested.add(cls)
    both = outer & nested
    if both:
        names = ", ".join(sorted(c.__qualname__ for c in both))
        raise ValueError(f"{names} is both the outer class of model/data and nested inside it")
    return nested


def _plain(class_type: type, *args: Any, **kwargs: Any) -> Any:
    return class_type(*args, **kwargs)


def nested_instantiators(config: Namespace) -> list[tuple[Any, type, bool]]:
    """``(instantiator, class, subclasses)`` tuples for ``ArgumentParser.instantiate``: each
    nested Lightning class (exactly that class) is built plainly."""
    return [(_plain, cls, False) for cls in nested_lightning_classes(config)]
