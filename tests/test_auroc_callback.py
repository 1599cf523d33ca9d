"""LogAUROC vs sklearn roc_auc_score, driven through real Lightning validate/test/fit runs."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from recording import RecordingLogger
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

from callbacks.auroc import LogAUROC, per_attribute_auroc
from lightning_modules.face_attributes.attribute_panel import LogAttributePanel

NAMES = ["Tied", "Saturated", "Weak", "Ranked", "NoPositive", "NoNegative"]
UNDEFINED = ["NoPositive", "NoNegative"]
# uneven batch sizes (sum 90) so accumulation across batches of different B is exercised
BATCHES = [7, 13, 5, 20, 1, 16, 28]


def make_data(n: int = 90, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, 6) with heavy ties and targets correlated with them; columns 4-5 single-class."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(-3, 4, (n, 6), generator=g).float() / 2  # 7 values: many ties
    # 18..26: distinct logits that a float32 sigmoid maps all to 1.0 (would give AUROC 0.5)
    logits[:, 1] = torch.randint(0, 5, (n,), generator=g).float() * 2 + 18
    logits[:, 3] = torch.randn(n, generator=g)  # no ties
    noise = torch.randn(n, 6, generator=g)
    centred = logits - logits.mean(0)
    target = (centred + noise * torch.tensor([1.0, 2.0, 4.0, 1.0, 1.0, 1.0]) > 0).float()
    target[:, 4], target[:, 5] = 0.0, 1.0
    return logits, target


def sklearn_auroc(logits: torch.Tensor, target: torch.Tensor) -> list[float]:
    return [roc_auc_score(target[:, j].numpy(), logits[:, j].numpy()) for j in range(4)]


def to_batch(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate (logits, target) rows into the batch contract: image (B, 1, 1, L), attributes."""
    logits = torch.stack([s[0] for s in samples])
    return {
        "image": logits.view(len(samples), 1, 1, -1),
        "attributes": torch.stack([s[1] for s in samples]),
    }


def loader(logits: torch.Tensor, target: torch.Tensor, batches: list[int] | None = None):
    dataset = TensorDataset(logits, target)
    if batches is None:
        return DataLoader(dataset, batch_size=8, collate_fn=to_batch)
    bounds = np.cumsum([0, *batches])
    index = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return DataLoader(dataset, batch_sampler=index, collate_fn=to_batch)


class FixedLogits(LightningModule):
    """forward reads the logits stored in the image: (B, 1, 1, L) -> (B, L)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.flatten(1) * self.scale.detach()

    def training_step(self, batch, batch_idx):
        return (self(batch["image"]) * self.scale).mean()

    def validation_step(self, batch, batch_idx):
        return {"logits": self(batch["image"]), "target": batch["attributes"]}

    test_step = validation_step

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def make_trainer(tmp_path, callbacks, logger=False, **kwargs) -> Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    options.update(kwargs)
    return Trainer(logger=logger, callbacks=callbacks, default_root_dir=tmp_path, **options)


def test_per_attribute_auroc_matches_sklearn_including_saturated_logits():
    logits, target = make_data()
    auroc, positives, negatives = per_attribute_auroc(logits, target)
    np.testing.assert_allclose(auroc[:4].numpy(), sklearn_auroc(logits, target), atol=1e-6)
    assert torch.isnan(auroc[4:]).all()
    assert positives.tolist() == target.sum(0).long().tolist()
    assert (positives + negatives == 90).all()
    # the saturated column is far from what a float32 sigmoid would give (all ties -> 0.5)
    assert abs(auroc[1].item() - 0.5) > 0.1


def test_validate_logs_sklearn_values_over_uneven_batches(tmp_path):
    logits, target = make_data()
    callback = LogAUROC(attribute_names=NAMES)
    trainer = make_trainer(tmp_path, [callback])
    with pytest.warns(UserWarning, match="NoPositive, NoNegative"):
        trainer.validate(FixedLogits(), loader(logits, target, BATCHES), verbose=False)
    expected = sklearn_auroc(logits, target)
    metrics = trainer.callback_metrics
    for name, value in zip(NAMES[:4], expected, strict=True):
        assert callback.last["val"][name] == pytest.approx(value, abs=1e-6)
        assert metrics[f"val/auroc/{name}"].item() == pytest.approx(value, abs=1e-6)
    assert metrics["val/auroc_macro"].item() == pytest.approx(np.mean(expected), abs=1e-6)
    assert metrics["val/auroc_num_defined"].item() == 4


def test_undefined_attributes_are_nan_and_not_logged(tmp_path):
    logits, target = make_data()
    callback = LogAUROC(attribute_names=NAMES)
    trainer = make_trainer(tmp_path, [callback])
    with pytest.warns(UserWarning, match="undefined"):
        trainer.validate(FixedLogits(), loader(logits, target), verbose=False)
    for name in UNDEFINED:
        assert math.isnan(callback.last["val"][name])
        assert f"val/auroc/{name}" not in trainer.callback_metrics
    # macro over the 4 defined columns, not diluted by 0 or 0.5 stand-ins for the other 2
    defined = sklearn_auroc(logits, target)
    assert trainer.callback_metrics["val/auroc_macro"].item() == pytest.approx(
        sum(defined) / 4, abs=1e-6
    )


class NamedData(LightningDataModule):
    attribute_names = [f"dm_{i}" for i in range(6)]

    def __init__(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.target = logits, target

    def test_dataloader(self):
        return loader(self.logits, self.target, BATCHES)


def test_test_stage_reads_names_from_datamodule(tmp_path):
    logits, target = make_data(seed=1)
    callback = LogAUROC()
    trainer = make_trainer(tmp_path, [callback])
    with pytest.warns(UserWarning, match="dm_4, dm_5"):
        trainer.test(FixedLogits(), datamodule=NamedData(logits, target), verbose=False)
    expected = sklearn_auroc(logits, target)
    assert list(callback.last["test"]) == NamedData.attribute_names
    assert trainer.callback_metrics["test/auroc/dm_2"].item() == pytest.approx(
        expected[2], abs=1e-6
    )
    assert "val" not in callback.last


def test_fit_skips_sanity_check_and_checkpoint_monitors_macro(tmp_path):
    logits, target = make_data()
    callback = LogAUROC(attribute_names=NAMES, plot=False)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/auroc_macro", mode="max")
    trainer = make_trainer(
        tmp_path,
        [callback, checkpoint],
        enable_checkpointing=True,
        max_epochs=1,
        limit_train_batches=1,
        num_sanity_val_steps=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(FixedLogits(), loader(logits, target), loader(logits, target, BATCHES))
    expected = sklearn_auroc(logits, target)
    # the two sanity batches would be counted twice if they leaked into the epoch's metric
    got = [callback.last["val"][name] for name in NAMES[:4]]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert checkpoint.best_model_score.item() == pytest.approx(np.mean(expected), abs=1e-6)


def test_csv_logger_gets_csv_png_and_metrics(tmp_path):
    logits, target = make_data()
    logger = CSVLogger(tmp_path, name="run")
    trainer = make_trainer(tmp_path, [LogAUROC(attribute_names=NAMES)], logger=logger)
    with pytest.warns(UserWarning, match="undefined"):
        trainer.validate(FixedLogits(), loader(logits, target), verbose=False)
    with open(f"{logger.log_dir}/auroc_val_epoch0.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["attribute"] for r in rows] == NAMES
    expected = sklearn_auroc(logits, target)
    for row, value in zip(rows[:4], expected, strict=True):
        assert float(row["auroc"]) == pytest.approx(value, abs=1e-6)
        assert int(row["num_positive"]) + int(row["num_negative"]) == 90
    assert [r["auroc"] for r in rows[4:]] == ["undefined", "undefined"]
    png = Image.open(f"{logger.log_dir}/media/val_auroc_per_attribute_step0.png")
    assert png.width > 200 and png.height > 200
    logger.save()
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        header = handle.readline()
    assert "val/auroc_macro" in header and "val/auroc/Tied" in header


def test_logger_with_log_image_receives_the_chart(tmp_path):
    logits, target = make_data()
    logger = RecordingLogger(str(tmp_path))
    trainer = make_trainer(tmp_path, [LogAUROC(attribute_names=NAMES, csv=False)], logger=logger)
    with pytest.warns(UserWarning, match="undefined"):
        trainer.validate(FixedLogits(), loader(logits, target), verbose=False)
    assert [call["key"] for call in logger.image_calls] == ["val/auroc_per_attribute"]
    (image,) = logger.image_calls[0]["images"]
    assert isinstance(image, Image.Image) and image.width > 200
    assert not list(tmp_path.glob("auroc_val_epoch*.csv"))  # csv=False


class BadOutputs(FixedLogits):
    def validation_step(self, batch, batch_idx):
        return self(batch["image"])


class BadTarget(FixedLogits):
    def validation_step(self, batch, batch_idx):
        return {"logits": self(batch["image"]), "target": batch["attributes"] * 2}


@pytest.mark.parametrize(
    ("module", "match"),
    [(BadOutputs, r"outputs \['logits', 'target'\]"), (BadTarget, "only hold 0 and 1")],
)
def test_bad_step_outputs_raise(tmp_path, module, match):
    logits, target = make_data()
    trainer = make_trainer(tmp_path, [LogAUROC()])
    with pytest.raises(ValueError, match=match):
        trainer.validate(module(), loader(logits, target), verbose=False)


class DeclaresLogitsOnly(FixedLogits):
    evaluation_outputs = ("logits",)

    def validation_step(self, batch, batch_idx):
        raise AssertionError("the key check must stop the run before the first step")


def test_declared_outputs_without_target_raise_at_setup(tmp_path):
    logits, target = make_data()
    trainer = make_trainer(tmp_path, [LogAUROC()])
    with pytest.raises(ValueError, match=r"\['target'\].*evaluation_outputs lists only"):
        trainer.validate(DeclaresLogitsOnly(), loader(logits, target), verbose=False)


def test_wrong_number_of_names_raises(tmp_path):
    logits, target = make_data()
    trainer = make_trainer(tmp_path, [LogAUROC(attribute_names=NAMES[:3])])
    with pytest.raises(ValueError, match="3 names but the logits have 6"):
        trainer.validate(FixedLogits(), loader(logits, target), verbose=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_two_processes_equal_single_process(tmp_path):
    """2 CPU processes (gloo, ddp_spawn) log the same AUROC as 1 process on the same 96 rows.

    96 = 6 batches of 8 per rank: the distributed sampler pads nothing, so the gathered set is
    exactly the single-process set. The chart, the CSV and an attribute panel are on, which
    also shows ``log_dir`` (a collective) is read on every rank and nothing stalls.
    """
    logits, target = make_data(n=96, seed=2)
    single = LogAUROC(attribute_names=NAMES)
    with pytest.warns(UserWarning, match="undefined"):
        make_trainer(tmp_path / "single", [single]).validate(
            FixedLogits(), loader(logits, target), verbose=False
        )
    logger = CSVLogger(tmp_path / "ddp", name="run")
    callbacks = [LogAUROC(attribute_names=NAMES), LogAttributePanel(num_images=4)]
    trainer = make_trainer(
        tmp_path / "ddp", callbacks, logger=logger, devices=2, strategy="ddp_spawn"
    )
    trainer.validate(FixedLogits(), loader(logits, target), verbose=False)
    metrics = trainer.callback_metrics  # sent back from rank zero
    expected = sklearn_auroc(logits, target)
    for name, value in zip(NAMES[:4], expected, strict=True):
        assert metrics[f"val/auroc/{name}"].item() == pytest.approx(
            single.last["val"][name], abs=1e-7
        )
        assert metrics[f"val/auroc/{name}"].item() == pytest.approx(value, abs=1e-6)
    assert metrics["val/auroc_num_defined"].item() == 4
    (csv_path,) = (tmp_path / "ddp").rglob("auroc_val_epoch0.csv")
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["num_positive"]) + int(r["num_negative"]) for r in rows] == [96] * 6
    assert list((tmp_path / "ddp").rglob("val_auroc_per_attribute_step0.png"))
    assert list((tmp_path / "ddp").rglob("val_attribute_panel_step0.png"))
