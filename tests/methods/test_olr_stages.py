"""OLR's probe and reconstruction stages on a frozen Siamese encoder (fast tests).

OLRLinearProbe and OLRReconstructor: the encoder stays frozen and in eval mode through a fit, it
loads from a Siamese checkpoint's ``encoder`` through ``--run.init_from``, the step outputs feed
the AUROC and image-quality callbacks, the majority and mean-image baselines equal hand/numpy
values (exact item weighting with uneven batches), and checkpoints round-trip.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torch.utils.data import DataLoader, Dataset

from callbacks import keys
from callbacks.auroc import LogAUROC
from callbacks.image_quality import LogImageQuality
from callbacks.image_to_image import LogImageToImagePanel
from datamodules.olr import OLRDataModule
from experiments.init_from import InitFrom, load_init_from
from lightning_modules.components.frozen import FrozenSubmodules, freeze
from lightning_modules.components.mean_image import image_sum
from lightning_modules.olr.decoder import reconstruction_target
from lightning_modules.olr.encoder import SiameseEncoder
from lightning_modules.olr.mean_image import mean_image_scores
from lightning_modules.olr.probe_module import OLRLinearProbe
from lightning_modules.olr.reconstructor import OLRReconstructor

SIZE, K, WIDTHS = 46, 8, [16, 32, 64]
ENCODER = {"embedding_dim": K, "widths": WIDTHS}


def probe(**kwargs) -> OLRLinearProbe:
    return OLRLinearProbe(**{**ENCODER, **kwargs})


def reconstructor(**kwargs) -> OLRReconstructor:
    return OLRReconstructor(**{**ENCODER, "image_size": SIZE, "channels": 16, **kwargs})


def trainer(**kwargs) -> L.Trainer:
    options = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    return L.Trainer(**options)


@pytest.fixture(scope="module")
def faces(synthetic_faces_root: Path) -> OLRDataModule:
    dm = OLRDataModule(
        root=str(synthetic_faces_root / "celeba"),
        image_size=SIZE,
        train_count=300,
        batch_size=32,
        num_workers=0,
    )
    dm.setup("fit")
    return dm


class Images(Dataset):
    """Hand-given images and labels as CelebA-style items."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "attributes": self.labels[i], "image_id": f"{i:06d}.jpg"}


class HandData(L.LightningDataModule):
    """Train and test splits given by hand; test batches of 2 (the last one shorter)."""

    def __init__(self, train: Images, test: Images, image_size: int = SIZE) -> None:
        super().__init__()
        self.save_hyperparameters({"image_size": image_size})
        self.train, self.test = train, test
        self.num_attributes = train.labels.shape[1]

    @property
    def train_attributes(self) -> torch.Tensor:
        return self.train.labels.to(torch.uint8)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=2)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=2)


# --- frozen encoder ---------------------------------------------------------------------------


def test_freeze_and_the_mixin_keep_a_submodule_in_eval():
    class Two(FrozenSubmodules, torch.nn.Module):
        frozen = ("a",)

        def __init__(self) -> None:
            super().__init__()
            self.a = freeze(torch.nn.BatchNorm1d(3))
            self.b = torch.nn.BatchNorm1d(3)

    two = Two().train()
    assert not two.a.training and two.b.training and two.training
    assert not any(p.requires_grad for p in two.a.parameters())
    two.eval().train(True)
    assert not two.a.training and two.b.training


@pytest.mark.parametrize("make", [probe, reconstructor], ids=["probe", "reconstructor"])
def test_fit_leaves_the_encoder_frozen_and_trains_the_head(make, faces):
    model = make()
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head = model.probe if isinstance(model, OLRLinearProbe) else model.decoder
    head_before = [p.detach().clone() for p in head.parameters()]
    trainer(limit_train_batches=3, limit_val_batches=1).fit(model, faces)
    assert not model.encoder.training and model.training
    assert all(not p.requires_grad and p.grad is None for p in model.encoder.parameters())
    after = model.encoder.state_dict()  # BatchNorm running statistics included
    assert all(torch.equal(encoder_before[k], after[k]) for k in encoder_before)
    assert any(not torch.equal(a, p) for a, p in zip(head_before, head.parameters(), strict=True))
    optimizer = model.configure_optimizers()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in head.parameters()}


@pytest.mark.parametrize("cosine", [False, True])
def test_reconstructor_cosine_decay_brings_the_rate_to_zero_at_the_last_step(faces, cosine):
    model = reconstructor(lr=1e-3, cosine_decay=cosine)
    fit = trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    fit.fit(model, faces)
    rate = fit.optimizers[0].param_groups[0]["lr"]
    assert rate == (pytest.approx(0.0, abs=1e-12) if cosine else 1e-3)


@pytest.mark.parametrize("make", [probe, reconstructor], ids=["probe", "reconstructor"])
def test_predict_over_the_train_and_test_loaders(make, faces):
    """OLRDataModule serves one predict loader per split (train, test); both modules take them,
    the probe giving label probabilities, the reconstructor x^ of the image size minus 2."""
    model = make().eval()
    out = trainer(limit_predict_batches=1).predict(model, faces)
    assert len(out) == 2 and all(len(split) == 1 for split in out)
    first = out[0][0]  # train: the first 32 images
    assert len(first[keys.IMAGE_ID]) == 32
    if isinstance(model, OLRLinearProbe):
        probs = first[keys.PROBS]
        assert probs.shape == (32, 38) and probs.min() >= 0 and probs.max() <= 1
    else:
        assert first[keys.PREDS].shape == (32, 3, SIZE - 2, SIZE - 2)


@pytest.mark.parametrize("make", [probe, reconstructor], ids=["probe", "reconstructor"])
def test_init_from_loads_a_siamese_encoder(make, tmp_path):
    torch.manual_seed(1)
    siamese = SiameseEncoder(**{**ENCODER, "widths": tuple(WIDTHS)})
    with torch.no_grad():  # non-default BatchNorm statistics, to see them arrive
        for module in siamese.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_()
    state = {f"encoder.{k}": v for k, v in siamese.state_dict().items()}
    state["teacher.weight"] = torch.zeros(1)  # the Siamese module's other parts are ignored
    path = tmp_path / "siamese.ckpt"
    torch.save({"state_dict": state}, path)
    model = make()
    load_init_from(model, [InitFrom(str(path), source="encoder", target="encoder")])
    loaded = model.encoder.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in siamese.state_dict().items())
    images = torch.rand(2, 3, SIZE, SIZE)
    assert torch.equal(model.encoder(images), siamese.eval()(images))


# --- outputs for the callbacks ------------------------------------------------------------------


def test_probe_outputs_feed_the_auroc_callback(faces):
    model, auroc = probe(), LogAUROC(stages=["test"], plot=False, csv=False)
    batch = next(iter(faces.test_dataloader()))
    results = trainer(limit_test_batches=1, callbacks=[auroc]).test(model, faces, verbose=False)
    assert {"test/accuracy", "test/majority_accuracy", "test/loss", "test/auroc_macro"} <= set(
        results[0]
    )
    assert set(OLRLinearProbe.evaluation_outputs) == {keys.LOGITS, keys.TARGET}
    probs = model.predict_step(batch, 0)[keys.PROBS]
    assert probs.shape == (len(batch["image"]), 38) and ((probs >= 0) & (probs <= 1)).all()


class KeepOutputs(L.Callback):
    """Keeps the outputs of the first test batch."""

    def __init__(self) -> None:
        self.outputs: dict = {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args) -> None:
        self.outputs = self.outputs or {**outputs, "batch": batch}


def test_reconstructor_outputs_feed_image_quality_and_panel(faces, tmp_path):
    model, kept = reconstructor(), KeepOutputs()
    callbacks = [LogImageQuality(stages=["test"]), LogImageToImagePanel(4, stages=["test"]), kept]
    fit = trainer(limit_test_batches=1, callbacks=callbacks, default_root_dir=tmp_path)
    results = fit.test(model, faces, verbose=False)[0]
    expected = {"test/ssim", "test/psnr", "test/mse", "test/ssim_mean_image", "test/mse_mean_image"}
    assert expected | {"test/loss", "test/loss_ssim", "test/loss_mse"} <= set(results)
    out, images = kept.outputs, kept.outputs["batch"]["image"]
    assert set(OLRReconstructor.evaluation_outputs) == {keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES}
    assert torch.equal(out[keys.INPUTS], images) and images.shape[-1] == SIZE
    assert (
        out[keys.PREDS].shape
        == out[keys.TARGET_IMAGES].shape
        == (len(images), 3, SIZE - 2, SIZE - 2)
    )
    assert out[keys.PREDS].min() >= 0 and out[keys.PREDS].max() <= 1
    assert torch.equal(out[keys.TARGET_IMAGES], images[..., 1:-1, 1:-1])
    assert results["test/mse"] == pytest.approx(
        (out[keys.PREDS] - out[keys.TARGET_IMAGES]).square().mean().item(), rel=1e-5
    )
    assert torch.allclose(model.reconstruct(images), out[keys.PREDS])
    assert torch.allclose(model.decode(model.encoder(images)), out[keys.PREDS])


def test_reconstructor_refuses_another_image_size(faces):
    with pytest.raises(ValueError, match="image_size=90 but --data.init_args.image_size=46"):
        trainer().test(reconstructor(image_size=90), faces, verbose=False)


# --- baselines ----------------------------------------------------------------------------------


def test_majority_baseline_equals_hand_values():
    train = torch.tensor([[1, 0], [1, 0], [0, 1]]).float()  # majority: present, absent
    test = torch.tensor([[1, 0], [1, 1], [0, 0]]).float()  # hits 2, 1, 1 of 2 labels each
    images = torch.rand(3, 3, 24, 24)
    data = HandData(Images(images, train), Images(images, test), image_size=24)
    model = OLRLinearProbe(num_labels=2, embedding_dim=2, widths=[4])
    result = trainer().test(model, data, verbose=False)[0]
    # item-weighted over the batches of 2 and 1 images (a batch mean would give 0.625)
    assert result["test/majority_accuracy"] == pytest.approx(4 / 6, abs=1e-7)
    assert model.majority.tolist() == [1.0, 0.0]


def test_mean_image_baseline_equals_numpy():
    generator = torch.Generator().manual_seed(0)
    train = torch.rand(5, 3, SIZE, SIZE, generator=generator)
    test = torch.rand(3, 3, SIZE, SIZE, generator=generator)
    labels = torch.zeros(5, 38)
    data = HandData(Images(train, labels), Images(test, labels[:3]))
    model = reconstructor()
    result = trainer().test(model, data, verbose=False)[0]
    mean = train.double().numpy()[:, :, 1:-1, 1:-1].mean(0)
    targets = test.double().numpy()[:, :, 1:-1, 1:-1]
    assert np.allclose(model.mean_image.double().numpy(), mean, atol=1e-6)
    assert int(model.mean_image_count) == 5
    mse = [((mean - t) ** 2).mean() for t in targets]
    ssim = [
        structural_similarity(
            mean.astype(np.float32).astype(np.float64),
            t,
            data_range=1.0,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for t in targets
    ]
    assert result["test/mse_mean_image"] == pytest.approx(np.mean(mse), rel=1e-5)
    assert result["test/ssim_mean_image"] == pytest.approx(np.mean(ssim), rel=1e-5)


def test_image_sum_shards_add_up_to_the_whole():
    images = torch.rand(7, 3, 12, 12)
    data = Images(images, torch.zeros(7, 1))
    whole, count = image_sum(data, batch_size=3, target=reconstruction_target)
    shards = [image_sum(data, r, 3, 2, target=reconstruction_target) for r in range(3)]
    assert count == 7 and sum(c for _, c in shards) == 7
    assert torch.allclose(sum(s for s, _ in shards), whole)
    assert torch.allclose(whole, images[..., 1:-1, 1:-1].double().sum(0))
    with pytest.raises(ValueError, match="differ in size"):
        mean_image_scores(torch.zeros(3, 12, 12), torch.zeros(1, 3, 10, 10))


# --- checkpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [probe, reconstructor], ids=["probe", "reconstructor"])
def test_checkpoint_round_trip(make, faces, tmp_path):
    model = make()
    fit = trainer(limit_train_batches=2, limit_val_batches=1, default_root_dir=tmp_path)
    fit.fit(model, faces)
    path = tmp_path / "model.ckpt"
    fit.save_checkpoint(path)
    loaded = type(model).load_from_checkpoint(path)
    assert loaded.hparams == model.hparams
    state, restored = model.state_dict(), loaded.state_dict()
    assert state.keys() == restored.keys()
    assert all(torch.equal(state[k], restored[k]) for k in state)
    assert not loaded.encoder.training or not loaded.training
    loaded.train()
    assert not loaded.encoder.training
    images = next(iter(faces.test_dataloader()))["image"][:4]
    model.eval(), loaded.eval()
    assert torch.equal(model(images), loaded(images))


@pytest.mark.parametrize("channels", [16, 64])
def test_a_fresh_decoder_passes_gradients_to_every_layer(channels):
    """A ReLU Conv2D_out that starts below zero everywhere would never train (seeds 0-19)."""
    for seed in range(20):
        torch.manual_seed(seed)
        decoder = reconstructor(channels=channels).decoder
        conv_out = decoder(torch.rand(2, 38, K) * 0.05)
        conv_out.mean().backward()
        assert conv_out.abs().max() > 0, f"seed {seed}: Conv2D_out is zero everywhere"
        assert decoder.layers.dense[0].weight.grad.abs().max() > 0, f"seed {seed}"


# --- the experiment YAMLs through the CLI ------------------------------------------------------


@pytest.mark.parametrize("name", ["olr/synthetic_probe", "olr/synthetic_decoder"])
def test_yaml_runs_from_a_siamese_checkpoint(name, synthetic_faces_root, tmp_path):
    """The experiment's fit (validation included) on the tiny twin, cut to a few batches, with
    the encoder of a hand-made Siamese checkpoint in place of the stage before."""
    import yaml
    from cli_runs import FAST, REPO, run_cli

    stage = yaml.safe_load((REPO / "experiments/olr/synthetic_siamese.yaml").read_text())
    act = stage["model"]["init_args"]["embed_act"]  # the Siamese stage's, as its YAML sets it
    siamese = SiameseEncoder(**{**ENCODER, "widths": tuple(WIDTHS), "embed_act": act})
    path = tmp_path / "siamese.ckpt"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in siamese.state_dict().items()}}, path)
    part = f"[{{checkpoint: {path}, source: encoder, target: encoder}}]"
    data = "--data.init_args."
    cli = run_cli(
        ["fit", "--config", str(REPO / "experiments/_base.yaml"),
         "--config", str(REPO / f"experiments/{name}.yaml"),
         f"{data}root={synthetic_faces_root / 'celeba'}", f"{data}synthetic=null",
         f"{data}train_count=300", f"{data}batch_size=8", f"{data}num_workers=0",
         f"--run.root={tmp_path / 'runs'}", f"--run.init_from={part}", *FAST,
         "--trainer.logger=false"]  # no W&B run left open for the next test
    )  # fmt: skip
    state = cli.model.encoder.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in siamese.state_dict().items())
    logged = set(cli.trainer.callback_metrics)
    if name.endswith("probe"):
        assert {"val/accuracy", "val/majority_accuracy", "val/auroc_macro"} <= logged
    else:
        assert {"val/ssim", "val/psnr", "val/mse", "val/ssim_mean_image"} <= logged
        assert {"train/loss_ssim", "train/loss_mse", "val/loss_ssim", "val/loss_mse"} <= logged
