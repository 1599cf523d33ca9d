"""MILModule, each pooling: batched == per-bag, gradients, DIM, studies, learning, checkpoints."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning import Trainer, seed_everything
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from datamodules.mnist_bags import MNISTBagsDataModule, make_bags
from datamodules.synthetic.mnist import write_synthetic_mnist
from lightning_modules.mil_lstm import AttentionPooling, DynamicPooling, LSTMPooling, MILModule
from lightning_modules.mil_lstm.infomax import (
    InstanceInfoMax,
    jsd_mi_loss,
    permute_within_groups,
)
from lightning_modules.mil_lstm.studies import (
    LogMILStudies,
    bag_orders,
    clustering_score,
    group_digits,
    mean_cluster_purity,
    order_errors,
    permuted_mistakes,
)

GATED = partial(AttentionPooling, gated=True)
MODELS = {
    "lstm": lambda: MILModule(LSTMPooling, infomax=True),
    "lstm_counting": lambda: MILModule(LSTMPooling, objective="regression"),
    "attention": lambda: MILModule(AttentionPooling),
    "gated_attention": lambda: MILModule(GATED, infomax=True),
    "dynamic_pooling": lambda: MILModule(DynamicPooling),
    "dynamic_pooling_linear": lambda: MILModule(partial(DynamicPooling, head="linear")),
    "attention_counting": lambda: MILModule(AttentionPooling, objective="regression"),
}
TINY = {"feature_dim": 128, "infomax": False, "lr": 1e-3}


def lstm(hidden_dim: int, **kwargs) -> MILModule:
    return MILModule(partial(LSTMPooling, hidden_dim=hidden_dim), **kwargs)


@pytest.fixture(scope="module")
def twin_root(tmp_path_factory):
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist_twin"))


def padded_batch(lengths=(4, 1, 7, 3), seed=0):
    generator = torch.Generator().manual_seed(seed)
    bag = torch.randn(len(lengths), max(lengths), 1, 28, 28, generator=generator)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return bag.masked_fill(~mask[..., None, None, None], 123.0), mask  # garbage in the padding


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batched_forward_equals_per_bag(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    bag, mask = padded_batch()
    with torch.no_grad():
        batched = model(bag, mask)
        single = torch.cat([model(bag[i : i + 1, : int(n)]) for i, n in enumerate(mask.sum(1))])
    assert batched.shape == (4,)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["thesis", "standard"])
def test_every_parameter_gets_a_gradient(variant):
    torch.manual_seed(0)
    model = lstm(8, feature_dim=32, infomax=True, infomax_variant=variant)
    bag, mask = padded_batch((3, 2))
    batch = {"bag": bag, "bag_mask": mask, "bag_label": torch.tensor([1.0, 0.0])}
    loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_dim_negatives_stay_inside_their_bag_and_mix():
    groups = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    perms = [permute_within_groups(groups) for _ in range(20)]
    for perm in perms:
        assert torch.equal(groups[perm], groups) and sorted(perm.tolist()) == list(range(8))
    assert any(p[4:].tolist() != [4, 5, 6, 7] for p in perms)


def test_jsd_estimator_hand_values():
    zero = torch.zeros(3)
    assert math.isclose(jsd_mi_loss(zero, zero).item(), 2 * math.log(2), rel_tol=1e-6)
    # perfect discrimination drives the loss to 0; the reverse to large values
    assert jsd_mi_loss(torch.full((3,), 20.0), torch.full((3,), -20.0)).item() < 1e-8
    assert jsd_mi_loss(torch.full((3,), -20.0), torch.full((3,), 20.0)).item() > 39


def test_standard_prior_is_adversarial_thesis_prior_cooperative():
    thesis, standard = (
        InstanceInfoMax(8, 4, variant="thesis"),
        InstanceInfoMax(8, 4, variant="standard"),
    )
    standard.prior_d.load_state_dict(thesis.prior_d.state_dict())
    grads = []
    for module in (thesis, standard):
        y = torch.randn(5, 8, generator=torch.Generator().manual_seed(1)).requires_grad_()
        torch.manual_seed(2)
        module._prior(y).backward()
        grads.append(y.grad)
    torch.testing.assert_close(grads[1], -grads[0])
    with pytest.raises(ValueError, match="variant"):
        InstanceInfoMax(variant="other")


def test_mean_cluster_purity_toy_case():
    # cluster A: 9 nines + 1 other; cluster B: 80 others + 10 nines
    labels = np.array([1] * 9 + [0] + [0] * 80 + [1] * 10)
    assignments = np.array([0] * 10 + [1] * 90)
    assert mean_cluster_purity(assignments, labels) == pytest.approx((0.9 + 80 / 90) / 2)
    assert mean_cluster_purity(assignments, labels) == pytest.approx(0.89444, abs=1e-5)
    majority = sum(np.bincount(labels[assignments == c]).max() for c in (0, 1))
    # the score is the mean of the per-cluster purities, not the global purity (0.89 here)
    assert mean_cluster_purity(assignments, labels) != pytest.approx(majority / len(labels))
    blobs = np.concatenate([np.random.default_rng(0).normal(c, 0.1, (30, 2)) for c in (0, 5, 10)])
    assert clustering_score(blobs, np.repeat([0, 1, 2], 30), k=3) == 1.0
    assert group_digits(np.array([3, 6, 1, 9]), [[3], [6]]).tolist() == [0, 1, 2, 2]


def test_order_study_permutes_valid_positions_only_and_by_bag():
    _, mask = padded_batch()
    orders = bag_orders(mask, torch.tensor([4, 7, 9, 2]), 3, seed=0)
    assert orders.shape == (3, *mask.shape)
    for order in orders:
        for row, n in zip(order, mask.sum(1), strict=True):
            assert sorted(row[:n].tolist()) == list(range(n)) and row[n:].tolist() == list(
                range(n, mask.shape[1])
            )
    assert any(not torch.equal(orders[0, 2], orders[r, 2]) for r in (1, 2))  # repeats differ
    # a bag's orders depend on its dataset index only, not on its batch (or process)
    n = int(mask[2].sum())
    alone = bag_orders(mask[2:3, :n], torch.tensor([9]), 3, seed=0)
    assert torch.equal(alone[:, 0], orders[:, 2, :n])
    assert not torch.equal(bag_orders(mask, torch.tensor([4, 7, 8, 2]), 3, seed=0), orders)
    torch.manual_seed(0)
    pooling = partial(AttentionPooling, attention_dim=8)
    model = MILModule(pooling, feature_dim=16).eval()  # permutation invariant
    bag, mask = padded_batch((5, 2, 6))
    batch = {"bag": bag, "bag_mask": mask, "bag_label": torch.tensor([1.0, 1.0, 0.0])}
    batch["index"] = torch.arange(3)
    expected = 100 * (model.predict(bag, mask) != batch["bag_label"]).float().mean().item()
    wrong = permuted_mistakes(model, batch, 5, seed=0)
    mean, std = order_errors(wrong, len(mask))
    assert mean == pytest.approx(expected) and std == 0.0
    assert order_errors(torch.tensor([1, 3]), 4) == (50.0, 25.0)


def test_counting_capsule_head_rejected():
    with pytest.raises(ValueError, match="head='linear'"):
        MILModule(DynamicPooling, objective="regression")


def test_pooling_is_built_by_the_module():
    with pytest.raises(TypeError, match="functools.partial"):
        MILModule(LSTMPooling(500))
    with pytest.raises(TypeError, match="not a BagPooling"):
        MILModule(torch.nn.Identity)


def _fit(model, datamodule, epochs, **kwargs):
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_lstm_learns_single_digit_rule_on_twin(twin_root):
    """LeNet + BiLSTM must learn "bag holds a '0'" from the twin's pixels (chance: 50 % error)."""
    seed_everything(0)
    datamodule = MNISTBagsDataModule(
        root=str(twin_root),
        task="single",
        target_digits=[0],
        mean_bag_length=4,
        std_bag_length=1,
        num_train_bags=80,
        num_val_bags=4,
        num_test_bags=60,
        batch_size=4,
        seed=0,
    )
    model = lstm(64, **TINY)
    trainer = _fit(model, datamodule, 8, enable_checkpointing=False, limit_val_batches=0)
    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    assert metrics["test/error"] <= 20.0
    assert metrics["test/auroc"] >= 0.9


def test_checkpoint_round_trip_and_studies_callback(twin_root, tmp_path):
    seed_everything(0)
    datamodule = MNISTBagsDataModule(
        root=str(twin_root),
        task="multiple",
        num_train_bags=8,
        num_val_bags=4,
        num_test_bags=12,
        batch_size=4,
    )
    model = lstm(8, feature_dim=32, infomax=True)
    trainer = _fit(model, datamodule, 1, default_root_dir=tmp_path)
    path = trainer.checkpoint_callback.best_model_path
    pooling = partial(LSTMPooling, hidden_dim=8)
    loaded = MILModule.load_from_checkpoint(path, pooling=pooling, weights_only=True).eval()
    assert loaded.hparams.feature_dim == 32 and loaded.infomax is not None
    assert loaded.pooling.lstm.hidden_size == 8
    bag, mask = padded_batch((3, 5))
    torch.testing.assert_close(loaded(bag, mask), model.eval()(bag, mask))
    studies = LogMILStudies(order_repeats=3, cluster_k=3, cluster_groups=[[3], [6]], max_points=120)
    tester = Trainer(
        accelerator="cpu",
        logger=CSVLogger(tmp_path),
        callbacks=[studies],
        enable_progress_bar=False,
    )
    metrics = tester.test(loaded, datamodule=datamodule, verbose=False)[0]
    assert 0 <= metrics["test/order_error"] <= 100 and 0 < metrics["test/cluster_score"] <= 100
    with pytest.raises(ValueError, match=r"LogMILStudies needs \['BoringModel.predict'"):
        Trainer(accelerator="cpu", callbacks=[studies], logger=False).test(
            BoringModel(), datamodule=datamodule, verbose=False
        )
    media = list(Path(tester.log_dir).glob("media/*.png"))
    assert {p.name.split("_step")[0] for p in media} == {
        "test_tsne_instances",
        "test_tsne_trajectories",
    }


def test_model_rejects_mismatched_datamodule(twin_root):
    datamodule = MNISTBagsDataModule(
        root=str(twin_root), task="counting", num_train_bags=4, num_val_bags=2, num_test_bags=2
    )
    with pytest.raises(ValueError, match="is_regression=False but MNISTBagsDataModule has True"):
        _fit(lstm(4, feature_dim=16), datamodule, 1, enable_checkpointing=False)


def _oracle_error(model, task: str, epochs: int = 30) -> float:
    """Train ``model.pool`` on oracle instance features one_hot(digit) + N(0, 0.1^2); test error."""
    digits = np.random.default_rng(0).integers(0, 10, 20000)
    pool, targets = np.arange(len(digits)), [3, 6] if task == "multiple" else [9]
    r = np.random.RandomState(0)
    train, test = (make_bags(r, pool, digits, task, n, 12, 2, targets) for n in (1000, 500))

    def batches(bags, size, generator):
        order = torch.randperm(len(bags.indices), generator=generator)
        for start in range(0, len(order), size):
            chosen = [bags.indices[i] for i in order[start : start + size].tolist()]
            mask = torch.zeros(len(chosen), max(map(len, chosen)), dtype=torch.bool)
            feats = torch.zeros(*mask.shape, 10)
            for b, index in enumerate(chosen):
                mask[b, : len(index)] = True
                feats[b, : len(index)] = torch.eye(10)[digits[index]]
            feats = feats + 0.1 * torch.randn(feats.shape, generator=generator) * mask[..., None]
            yield feats, mask, torch.from_numpy(bags.labels[order[start : start + size].numpy()])

    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for feats, mask, labels in batches(train, 16, generator):
            loss = model._bag_loss(model.pool(feats, mask), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        wrong = sum(
            (model._decide(model.pool(f, m)) != y).sum().item()
            for f, m, y in batches(test, 100, generator)
        )
    return 100.0 * wrong / len(test.indices)


@pytest.mark.slow
def test_bilstm_expresses_and_rule_that_attention_cannot():
    """Spec mechanism test: BiLSTM pooling learns "3 AND 6"; attention pooling lags >= 10 pp."""
    torch.manual_seed(0)
    lstm_error = _oracle_error(lstm(32, feature_dim=10), "multiple")
    attention = _oracle_error(
        MILModule(partial(AttentionPooling, attention_dim=16), feature_dim=10), "multiple"
    )
    print(f"oracle features, multiple: BiLSTM {lstm_error:.1f} %, attention {attention:.1f} %")
    assert lstm_error <= 5.0
    assert attention >= lstm_error + 10.0
