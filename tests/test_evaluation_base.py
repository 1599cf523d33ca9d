"""``callbacks.base.EvaluationCallback``: stage routing, the epoch rule and the key checks."""

from __future__ import annotations

import pytest
import torch
from lightning import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import keys
from callbacks.base import EvaluationCallback


class CountRows(EvaluationCallback):
    """Counts the rows of LOGITS seen per stage and records when each report happened."""

    required_keys = (keys.LOGITS,)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reports: list[tuple[str, int, int]] = []

    def make_metrics(self, stage: str) -> nn.Module:
        holder = nn.Module()
        holder.register_buffer("rows", torch.zeros((), dtype=torch.long))
        return holder

    def update(self, metrics, outputs, batch, pl_module) -> None:
        metrics.rows += len(outputs[keys.LOGITS])

    def report(self, stage, metrics, trainer, pl_module) -> None:
        self.reports.append((stage, trainer.current_epoch, int(metrics.rows)))


class Tiny(LightningModule):
    evaluation_outputs = (keys.LOGITS,)

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).mean()

    def validation_step(self, batch, batch_idx):
        return {keys.LOGITS: self.layer(batch[0])}

    test_step = validation_step

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader(n: int = 10) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(n, 2)), batch_size=4)


def trainer(**kwargs) -> Trainer:
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False)
    options.update(enable_progress_bar=False, enable_model_summary=False)
    return Trainer(**options, **kwargs)


def test_epoch_rule_skips_sanity_check_and_reports_the_last_epoch():
    callback = CountRows(every_n_epochs=2)
    fit = trainer(max_epochs=5, callbacks=[callback], num_sanity_val_steps=2)
    fit.fit(Tiny(), loader(), loader())
    # after epochs 1 and 3 ((epoch + 1) % 2 == 0) and the last one (4); all 10 rows each time
    assert callback.reports == [("val", 1, 10), ("val", 3, 10), ("val", 4, 10)]
    fit.test(Tiny(), loader(6), verbose=False)
    assert callback.reports[-1][0] == "test" and callback.reports[-1][2] == 6


def test_stages_narrow_what_is_evaluated():
    callback = CountRows(stages=["test"])
    run = trainer(max_epochs=1, callbacks=[callback])
    run.validate(Tiny(), loader(), verbose=False)
    run.test(Tiny(), loader(), verbose=False)
    assert [r[0] for r in callback.reports] == ["test"]


def test_validate_outside_fit_always_reports():
    callback = CountRows(every_n_epochs=3)
    trainer(callbacks=[callback]).validate(Tiny(), loader(), verbose=False)
    assert callback.reports == [("val", 0, 10)]


class Undeclared(Tiny):
    evaluation_outputs = None

    def validation_step(self, batch, batch_idx):
        return {keys.PROBS: self.layer(batch[0])}


class DeclaresProbs(Tiny):
    evaluation_outputs = (keys.PROBS,)


def test_missing_key_at_a_step_names_it():
    with pytest.raises(ValueError, match=r"CountRows needs the val step outputs \['logits'\]"):
        trainer(callbacks=[CountRows()]).validate(Undeclared(), loader(), verbose=False)


def test_missing_declared_key_fails_at_setup():
    with pytest.raises(ValueError, match=r"\['logits'\].*DeclaresProbs.evaluation_outputs"):
        trainer(callbacks=[CountRows()]).validate(DeclaresProbs(), loader(), verbose=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"stages": ["train"]}, "stages are 'val' or 'test'"), ({"every_n_epochs": 0}, ">= 1")],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CountRows(**kwargs)


def test_unknown_required_key_is_refused():
    class Typo(CountRows):
        required_keys = ("logit",)

    with pytest.raises(ValueError, match=r"unknown output keys \['logit'\]"):
        Typo()
