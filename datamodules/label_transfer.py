"""Train on a labelled dataset, predict on an unlabelled one (CelebA attributes -> FFHQ labels).

``LabelTransferDataModule`` wraps two DataModules: ``source`` (labelled, e.g. CelebA) serves fit,
validate and test; ``target`` (e.g. FFHQ) serves predict through its own ``predict_dataloader``.
The facts the model checks (``attribute_names``, ``num_attributes``, ``train_attributes``) and the
image normalisation come from ``source``; both must normalise alike, which ``setup`` checks.

    data:
      class_path: datamodules.label_transfer.LabelTransferDataModule
      init_args:
        source: {class_path: datamodules.celeba.CelebADataModule, init_args: {...}}
        target: {class_path: datamodules.ffhq.FFHQDataModule, init_args: {...}}
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.formats.errors import DatasetNotFoundError, FormatError, for_nested


class LabelTransferDataModule(LightningDataModule):
    """Fit/validate/test on ``source``, predict on ``target``.

    Args:
        source: Labelled DataModule (train, val, test loaders; ``train_attributes`` etc.).
        target: Unlabelled DataModule whose ``predict_dataloader`` yields the images to label.
    """

    def __init__(self, source: LightningDataModule, target: LightningDataModule) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["source", "target"])
        self.source = source
        self.target = target

    # facts of the labelled side -------------------------------------------------------------------
    @property
    def attribute_names(self) -> list[str] | None:
        """Attribute names of ``source``."""
        return getattr(self.source, "attribute_names", None)

    @property
    def num_attributes(self) -> int | None:
        """Number of attributes of ``source``."""
        return getattr(self.source, "num_attributes", None)

    @property
    def train_attributes(self) -> Any:
        """Training labels of ``source`` (for class weights)."""
        return self.source.train_attributes

    @property
    def image_mean(self) -> Any:
        """Normalisation mean of ``source`` (``target`` is checked to match)."""
        return getattr(self.source, "image_mean", None)

    @property
    def image_std(self) -> Any:
        """Normalisation std of ``source``."""
        return getattr(self.source, "image_std", None)

    # hooks ----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        for part in ("source", "target"):
            with _flags_of(part):
                getattr(self, part).prepare_data()

    def setup(self, stage: str) -> None:
        """Set up ``source`` for fit/validate/test and ``target`` for predict."""
        for side in ("mean", "std"):
            ours = getattr(self.source, f"image_{side}", None)
            theirs = getattr(self.target, f"image_{side}", None)
            if ours is not None and theirs is not None and tuple(ours) != tuple(theirs):
                raise ValueError(
                    f"source and target normalise differently: image_{side} {tuple(ours)} "
                    f"({type(self.source).__name__}) vs {tuple(theirs)} "
                    f"({type(self.target).__name__})"
                )
        part = "target" if stage == "predict" else "source"
        with _flags_of(part):
            getattr(self, part).setup(stage)

    def train_dataloader(self) -> DataLoader:
        return self.source.train_dataloader()

    def val_dataloader(self) -> DataLoader:
        return self.source.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.source.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.target.predict_dataloader()


@contextmanager
def _flags_of(part: str) -> Iterator[None]:
    """Data errors of the nested module ``part`` suggest the flags that reach it."""
    try:
        yield
    except (DatasetNotFoundError, FormatError) as error:
        raise for_nested(error, part) from error
