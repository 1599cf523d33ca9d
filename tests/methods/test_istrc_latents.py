"""ISTRC stages 3-5: the latent cache (every item once, in dataset order, unit z, h = D_enc(x)),
the cached-latent DataModule, the mapping F (layer plan, L_F, exact MSE and R^2) and the latent
attribute classifiers C_a (depths, eq. (1) BCE, AUROC and accuracy).

References are independent: numpy formulas, sklearn's ``r2_score`` / ``roc_auc_score``, the
BEGAN's own ``discriminator.encode`` and the CelebA DataModule's own items. The slow test runs
the cache and the evaluations on two gloo processes and compares them with one process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning import LightningDataModule, Trainer
from sklearn.metrics import r2_score, roc_auc_score
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from callbacks.auroc import LogAUROC
from datamodules.celeba import CelebADataModule
from datamodules.formats.errors import DatasetNotFoundError
from datamodules.latents import LatentDataModule, latents_file
from lightning_modules.istrc.began import BEGAN
from lightning_modules.istrc.edit_path import semantic_transformation
from lightning_modules.istrc.latent_cache import LatentCache, WriteLatents
from lightning_modules.istrc.latent_classifier import (
    DEFAULT_ATTRIBUTES,
    LatentAttributeClassifier,
    attribute_bce,
)
from lightning_modules.istrc.mapping import ISTRCMapping, LatentMapping, MappingScores

NAMES = ["Male", "Big_Nose", "Attractive"]
SIZES = {"train": 23, "val": 17, "test": 19}  # batches of 5: uneven last batches


class TinyEncoder(nn.Module):
    """Stand-in for E: [-1, 1] images -> L2-normalised rows (B, dim)."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(16, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.net(images)), dim=1)


def _trainer(tmp_path, **kwargs) -> Trainer:
    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return Trainer(**(settings | kwargs))


def _write_latents(folder, seed: int = 0, dim: int = 6, code: int = 4, splits=tuple(SIZES)):
    """Hand-made latents files: h depends on z (learnable), labels on z's signs."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        n = SIZES[split]
        z = F.normalize(torch.randn(n, dim, generator=generator), dim=1)
        h = 3 * z[:, :code] + 0.1 * torch.randn(n, code, generator=generator) + 5.0
        attributes = torch.stack([z[:, 0] > 0, z[:, 1] > 0, z[:, 2] > 0.3], dim=1)
        torch.save(
            {
                "z": z,
                "h": h,
                "attributes": attributes.to(torch.uint8),
                "identity": torch.arange(n),
                "image_id": [f"{split}_{i:03d}.jpg" for i in range(n)],
                "attribute_names": list(NAMES),
            },
            latents_file(folder, split),
        )
    return folder


# --- F ---------------------------------------------------------------------------------------


def test_mapping_is_five_linear_layers_with_batchnorm_and_tanh_on_the_hidden_ones():
    mapping = LatentMapping(32, 16, width=128)
    assert [type(m) for m in mapping] == [nn.Linear, nn.BatchNorm1d, nn.Tanh] * 4 + [nn.Linear]
    linears = [m for m in mapping if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (32, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 16),
    ]
    assert [m.num_features for m in mapping if isinstance(m, nn.BatchNorm1d)] == [128] * 4
    default = LatentMapping()
    assert default[0].in_features == 128 and default[-1].out_features == 64
    assert default[0].out_features == 512


def test_mapping_loss_is_mse_over_nh_plus_the_squared_linear_weights():
    module = ISTRCMapping(latent_dim=2, code_size=2, width=3, l2_weight=0.5)
    for layer in module.mapping:
        if isinstance(layer, nn.Linear):
            nn.init.constant_(layer.weight, 0.1)
            nn.init.constant_(layer.bias, 5.0)  # biases: not penalised
        elif isinstance(layer, nn.BatchNorm1d):
            nn.init.constant_(layer.weight, 7.0)  # BN weights: not penalised
    predicted = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    h = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # items: (1 + 4) / 2 = 2.5 and (4 + 9) / 2 = 6.5, mean 4.5; weights: 2*3 + 3*3*3 + 3*2 = 39
    # elements of 0.1^2
    expected = 4.5 + 0.5 * 39 * 0.01
    assert module.loss(predicted, h).item() == pytest.approx(expected, rel=1e-6)


def test_r2_is_one_minus_mse_over_the_mean_variance_on_uneven_batches():
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(41, 5, generator=generator) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0]) + 100
    predicted = h + 0.7 * torch.randn(41, 5, generator=generator)
    metric, left, right = MappingScores(5), MappingScores(5), MappingScores(5)
    for start, stop in ((0, 1), (1, 17), (17, 41)):
        metric.update(predicted[start:stop], h[start:stop])
    left.update(predicted[:9], h[:9])
    right.update(predicted[9:], h[9:])
    left.merge_state(right)
    y, p = h.double().numpy(), predicted.double().numpy()
    mse = np.mean((y - p) ** 2)
    reference = 1 - mse / np.mean(np.var(y, axis=0))
    for scores in (metric, left):
        got_mse, got_r2 = scores.compute()
        assert got_mse.item() == pytest.approx(mse, rel=1e-12)
        assert got_r2.item() == pytest.approx(reference, rel=1e-9)
        assert got_r2.item() == pytest.approx(
            r2_score(y, p, multioutput="variance_weighted"), rel=1e-9
        )
    metric.reset()
    assert metric.count == 0 and metric.target_sum.abs().sum() == 0


def test_mapping_logs_the_exact_mse_and_r2_of_the_whole_split(tmp_path):
    data = LatentDataModule(str(_write_latents(tmp_path / "cache")), batch_size=5)
    torch.manual_seed(0)
    module = ISTRCMapping(latent_dim=6, code_size=4, width=8)
    trainer = _trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    logged = trainer.callback_metrics
    assert {"train/loss", "train/mse", "train/r2", "val/mse", "val/r2"} <= set(logged)
    module.eval()
    split = data.splits["val"]
    with torch.no_grad():
        y, p = split.h.double().numpy(), module(split.z).double().numpy()
    assert logged["val/mse"].item() == pytest.approx(np.mean((y - p) ** 2), rel=1e-5)
    assert logged["val/r2"].item() == pytest.approx(
        r2_score(y, p, multioutput="variance_weighted"), rel=1e-5
    )
    with pytest.raises(ValueError, match="code_size"):
        _trainer(tmp_path).validate(ISTRCMapping(latent_dim=6, code_size=5), datamodule=data)


# --- C_a -------------------------------------------------------------------------------------


def test_classifier_depth_per_attribute_and_overrides():
    spec = {"Smiling": 4, "Mouth_Slightly_Open": 4, "Male": 4, "Mustache": 4, "No_Beard": 4}
    spec |= {"Heavy_Makeup": 4, "Big_Nose": 6, "Big_Lips": 6, "Narrow_Eyes": 6, "Young": 6}
    spec |= {"Attractive": 7}
    module = LatentAttributeClassifier()
    assert module.attributes == list(DEFAULT_ATTRIBUTES) and set(spec) == set(DEFAULT_ATTRIBUTES)
    for name, depth in spec.items():
        network = module.logit_network(name)
        linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
        assert len(linears) == depth, name
        assert [m.out_features for m in linears] == [256] * (depth - 1) + [1]
        assert linears[0].in_features == 128
        assert sum(isinstance(m, nn.ReLU) for m in network.modules()) == depth - 1
        assert network(torch.zeros(3, 128)).shape == (3, 1)
    other = LatentAttributeClassifier(["Male", "Black_Hair"], depths={"Male": 5}, default_depth=3)
    counts = {
        name: sum(isinstance(m, nn.Linear) for m in other.logit_network(name).modules())
        for name in ("Male", "Black_Hair")
    }
    assert counts == {"Male": 5, "Black_Hair": 3}
    z = F.normalize(torch.randn(4, 128), dim=1)
    torch.testing.assert_close(other(z), torch.sigmoid(other.logits(z)))
    torch.testing.assert_close(other.logits(z)[:, 1:], other.logit_network("Black_Hair")(z))
    with pytest.raises(ValueError, match="not classified"):
        LatentAttributeClassifier(["Male"], depths={"Young": 4})
    with pytest.raises(KeyError, match="Young"):
        other.logit_network("Young")


def test_bce_is_equation_one_per_attribute():
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0], [-4.0, 0.5]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    p = 1 / (1 + np.exp(-logits.double().numpy()))
    y = target.double().numpy()
    reference = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), axis=0)
    got = attribute_bce(logits, target)
    np.testing.assert_allclose(got.double().numpy(), reference, rtol=1e-6)
    for j in range(2):
        torch_bce = F.binary_cross_entropy(torch.sigmoid(logits[:, j]), target[:, j])
        assert got[j].item() == pytest.approx(torch_bce.item(), rel=1e-6)


def test_classifier_auroc_and_accuracy_match_sklearn_and_numpy(tmp_path):
    data = LatentDataModule(str(_write_latents(tmp_path / "cache")), batch_size=5)
    torch.manual_seed(0)
    module = LatentAttributeClassifier(NAMES, latent_dim=6, width=16)
    auroc = LogAUROC(plot=False, csv=False)
    trainer = _trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0, callbacks=[auroc])
    trainer.fit(module, datamodule=data)
    assert {"train/loss", "val/loss", "val/auroc_macro", "val/accuracy_macro"} <= set(
        trainer.callback_metrics
    )
    trainer.test(module, datamodule=data, verbose=False)
    logged = trainer.callback_metrics
    split = data.splits["test"]
    with torch.no_grad():
        scores = module.logits(split.z).numpy()
    y = split.attributes.numpy()
    for j, name in enumerate(NAMES):
        expected = roc_auc_score(y[:, j], scores[:, j])
        assert logged[f"test/auroc/{name}"].item() == pytest.approx(expected, rel=1e-6)
        accuracy = np.mean((scores[:, j] > 0) == (y[:, j] == 1))
        assert logged[f"test/accuracy/{name}"].item() == pytest.approx(accuracy, rel=1e-6)
    assert logged["test/accuracy_macro"].item() == pytest.approx(
        np.mean((scores > 0) == (y == 1)), rel=1e-6
    )
    assert {"test/loss", "test/auroc_macro"} <= set(logged)


def test_classifier_refuses_data_with_other_attribute_columns(tmp_path):
    data = LatentDataModule(str(_write_latents(tmp_path / "cache")), attributes=["Big_Nose"])
    with pytest.raises(ValueError, match="attribute_names"):
        _trainer(tmp_path).validate(LatentAttributeClassifier(["Male"], latent_dim=6), data)


# --- stage 3: the cache, and the DataModule reading it ------------------------------------------


def test_cache_writes_every_item_once_in_dataset_order(synthetic_faces_root, tmp_path):
    torch.manual_seed(0)
    encoder, began = TinyEncoder(dim=8), BEGAN(image_size=32, filters=8, code_size=16)
    cache = LatentCache(encoder, image_size=32, filters=8, code_size=16)
    cache.d_enc.load_state_dict(began.discriminator.encoder.state_dict())
    faces = CelebADataModule(
        root=str(synthetic_faces_root / "celeba"),
        image_size=32,
        split="official",
        crop="face128",
        normalize="none",
        randaugment=True,  # predicting the training split must not augment it
        batch_size=16,
        num_workers=0,
        predict_splits=["train", "val", "test"],
    )
    out = tmp_path / "run"
    _trainer(tmp_path, callbacks=[WriteLatents(str(out))]).predict(
        cache, datamodule=faces, return_predictions=False
    )
    for split in ("train", "val", "test"):
        written = torch.load(latents_file(out, split), weights_only=True)
        dataset = faces.predict_dataset(split)
        n = len(dataset)
        assert written["image_id"] == dataset.names and n > 16
        assert written["z"].shape == (n, 8) and written["h"].shape == (n, 16)
        assert (written["z"].norm(dim=1) - 1).abs().max() < 1e-5
        assert torch.equal(written["attributes"], dataset.attributes)
        assert torch.equal(written["identity"], dataset.identities)
        assert written["attribute_names"] == faces.attribute_names
        picks = [0, n // 2, n - 1]
        signed = torch.stack([dataset[i]["image"] for i in picks]) * 2 - 1
        with torch.no_grad():
            torch.testing.assert_close(written["h"][picks], began.discriminator.encode(signed))
            torch.testing.assert_close(written["z"][picks], encoder(signed))
    latents = LatentDataModule(str(out), attributes=["Male", "Big_Nose"], batch_size=7)
    latents.setup("fit")
    assert (latents.latent_dim, latents.code_size) == (8, 16)
    item = latents.splits["val"][0]
    assert set(item) == {"z", "h", "attributes", "identity", "image_id"}
    assert item["attributes"].shape == (2,) and item["attributes"].dtype == torch.float32
    batch = next(iter(latents.val_dataloader()))
    assert batch["z"].shape == (7, 8) and batch["h"].shape == (7, 16)


def test_cache_refuses_an_encoder_without_unit_outputs():
    class Raw(TinyEncoder):
        def forward(self, images):
            return 2 * super().forward(images)

    cache = LatentCache(Raw(), image_size=32, filters=8, code_size=16)
    with pytest.raises(ValueError, match="unit rows"):
        cache(torch.zeros(2, 3, 32, 32))
    assert not any(p.requires_grad for p in cache.parameters())
    cache.train()
    assert not cache.encoder.training and not cache.d_enc.training


def test_latent_datamodule_names_a_missing_file_and_how_to_write_it(tmp_path):
    folder = _write_latents(tmp_path / "part", splits=("train", "val"))
    with pytest.raises(DatasetNotFoundError, match="latents_test.pt") as error:
        LatentDataModule(str(folder)).setup("fit")
    assert "LatentCache" in str(error.value) and "WriteLatents" in str(error.value)
    with pytest.raises(DatasetNotFoundError, match="latents_train.pt"):
        LatentDataModule(str(tmp_path / "nowhere")).setup("fit")
    runs = tmp_path / "runs" / "istrc" / "latents"
    _write_latents(runs / "2026-01-01_00-00-00", seed=1)
    _write_latents(runs / "2026-02-01_00-00-00", seed=2)
    newest = LatentDataModule(str(runs))
    newest.setup("fit")
    assert newest.folder.name == "2026-02-01_00-00-00"
    with pytest.raises(ValueError, match="Smiling"):
        LatentDataModule(str(runs), attributes=["Smiling"]).setup("fit")


def test_shuffled_labels_permute_the_training_rows_only(tmp_path):
    folder = _write_latents(tmp_path / "cache")
    plain, shuffled = (
        LatentDataModule(str(folder)),
        LatentDataModule(str(folder), shuffle_labels=True),
    )
    plain.setup("fit")
    shuffled.setup("fit")
    before, after = plain.splits["train"], shuffled.splits["train"]
    assert torch.equal(before.z, after.z) and not torch.equal(before.attributes, after.attributes)
    rows = lambda a: sorted(map(tuple, a.tolist()))  # noqa: E731
    assert rows(before.attributes) == rows(after.attributes)  # the same labels, other owners
    for split in ("val", "test"):
        assert torch.equal(plain.splits[split].attributes, shuffled.splits[split].attributes)


def test_writer_refuses_items_predicted_twice(tmp_path):
    items = [
        {"image": torch.zeros(3, 32, 32), "attributes": torch.zeros(2), "identity": 0,
         "image_id": f"{i}.jpg"}
        for i in range(3)
    ]  # fmt: skip

    class Twice(LightningDataModule):
        def predict_dataloader(self):
            return DataLoader(items + items[:1], batch_size=2)

    cache = LatentCache(TinyEncoder(), image_size=32, filters=8, code_size=16)
    writer = WriteLatents(str(tmp_path / "out"))
    with pytest.raises(ValueError, match="more than once"):
        _trainer(tmp_path, callbacks=[writer]).predict(cache, Twice(), return_predictions=False)


# --- DDP ---------------------------------------------------------------------------------------


def _seeded(make, seed: int = 0):
    torch.manual_seed(seed)
    return make()


def _cache() -> LatentCache:
    return _seeded(lambda: LatentCache(TinyEncoder(), image_size=32, filters=8, code_size=16))


def _classifier() -> LatentAttributeClassifier:
    return _seeded(lambda: LatentAttributeClassifier(NAMES, latent_dim=6, width=16))


def _mapping() -> ISTRCMapping:
    return _seeded(lambda: ISTRCMapping(latent_dim=6, code_size=4, width=8))


@pytest.mark.slow
def test_two_processes_write_the_cache_one_process_writes(tmp_path):
    from test_ddp_logging import Shards

    generator = torch.Generator().manual_seed(3)
    images = torch.rand(9, 3, 32, 32, generator=generator) * 2 - 1
    items = [
        {"image": images[i], "attributes": torch.tensor([i % 2, i % 3 == 0]).float(),
         "identity": torch.tensor(i), "image_id": f"{i:03d}.jpg"}
        for i in range(9)
    ]  # fmt: skip
    written = {}
    for devices in (1, 2):
        out = tmp_path / f"cache_{devices}"
        trainer = _trainer(
            tmp_path,
            devices=devices,
            strategy="ddp_spawn" if devices > 1 else "auto",
            callbacks=[WriteLatents(str(out))],
        )
        trainer.predict(_cache(), datamodule=Shards(items), return_predictions=False)
        written[devices] = torch.load(latents_file(out, "split0"), weights_only=True)
    one, two = written[1], written[2]
    assert one["image_id"] == two["image_id"] == [f"{i:03d}.jpg" for i in range(9)]
    for name in ("z", "h", "attributes", "identity"):
        torch.testing.assert_close(two[name], one[name], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_two_processes_log_the_mapping_and_classifier_values_of_one(tmp_path):
    from test_ddp_logging import Shards, assert_same_as_one_process

    folder = _write_latents(tmp_path / "cache", splits=("val",))
    payload = torch.load(latents_file(folder, "val"), weights_only=True)
    items = [
        {"z": payload["z"][i], "h": payload["h"][i], "attributes": payload["attributes"][i].float()}
        for i in range(9)  # 5 and 4 items on two ranks, batches of 2
    ]
    facts = {"attribute_names": NAMES, "latent_dim": 6, "code_size": 4}
    data = Shards(items, **facts)
    alone = assert_same_as_one_process(
        tmp_path, _classifier, data, "validate", lambda: [LogAUROC(plot=False, csv=False)], 1e-5
    )
    assert {"val/auroc/Male", "val/accuracy/Male", "val/loss"} <= set(alone)
    (tmp_path / "f").mkdir()
    alone = assert_same_as_one_process(tmp_path / "f", _mapping, data, "validate", rel=1e-5)
    assert set(alone) == {"val/mse", "val/r2"}


def test_checkpoints_round_trip_and_the_logit_network_drives_the_edit_path(tmp_path):
    data = LatentDataModule(str(_write_latents(tmp_path / "cache")), batch_size=5)
    data.setup("fit")
    z = data.splits["val"].z
    for make in (_mapping, _classifier):
        module = make()
        trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0)
        trainer.fit(module, datamodule=data)
        trainer.save_checkpoint(tmp_path / "m.ckpt")
        loaded = type(module).load_from_checkpoint(tmp_path / "m.ckpt").eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(z), module.eval()(z))
    path = semantic_transformation(loaded.logit_network("Male"), z[:4], y=1, steps=4, every=2)
    assert path.snapshots.shape == (2, 4, 6) and path.probabilities.shape == (5, 4)
