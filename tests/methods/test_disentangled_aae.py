"""DisentangledAAE Stage A: shapes, the three updates each changing only their player, a tiny fit
on the twin with finite losses and logged RMSE, and a checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.callbacks import Callback

import lightning_modules.disentangled_aae.module as aae_module
from callbacks import keys
from datamodules.disentangled_aae import DisentangledAAEDataModule
from lightning_modules.disentangled_aae.module import AE_LOGS, DisentangledAAE

TINY = {
    "image_size": 32,
    "encoder_channels": 8,
    "generator_channels": 8,
    "discriminator_channels": 8,
    "latent_hidden": 32,
    "lr": 1e-3,
}
PLAYERS = ("encoder", "generator", "latent_discriminator", "image_discriminator")


def _data(root) -> DisentangledAAEDataModule:
    return DisentangledAAEDataModule(
        root=str(root / "celeba"), image_size=32, hist_eq=False, batch_size=16, num_workers=0
    )


def _trainer(tmp_path, batches: int = 3, **kwargs) -> Trainer:
    args = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "limit_train_batches": batches,
        "limit_val_batches": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tmp_path,
    }
    return Trainer(**(args | kwargs))


def test_shapes_and_the_optimizers_partition_the_players():
    model = DisentangledAAE(**TINY)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert model.encode(x).shape == (2, 99)
    out = model(x)
    assert out.shape == x.shape and out.abs().max() <= 1
    assert model.generate(model.sample_prior(3)).shape == (3, 3, 32, 32)
    groups = [
        {id(p) for group in opt.param_groups for p in group["params"]}
        for opt in model.configure_optimizers()
    ]
    nets = {name: {id(p) for p in getattr(model, name).parameters()} for name in PLAYERS}
    assert groups == [nets["encoder"] | nets["generator"], nets[PLAYERS[2]], nets[PLAYERS[3]]]
    for opt in model.configure_optimizers():
        assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.0, 0.999)


def test_each_update_changes_only_its_player(synthetic_faces_root, tmp_path, monkeypatch):
    changed: list[set[str]] = []
    update = aae_module.network_update

    def recording_update(module, optimizer, *args, **kwargs):
        before = {n: p.detach().clone() for n, p in module.named_parameters()}
        loss = update(module, optimizer, *args, **kwargs)
        changed.append(
            {n.split(".")[0] for n, p in module.named_parameters() if not torch.equal(before[n], p)}
        )
        return loss

    monkeypatch.setattr(aae_module, "network_update", recording_update)
    model = DisentangledAAE(**TINY)
    _trainer(tmp_path, batches=2, limit_val_batches=0).fit(model, _data(synthetic_faces_root))
    order = [{"latent_discriminator"}, {"image_discriminator"}, {"encoder", "generator"}]
    assert changed == order * 2


def test_a_tiny_fit_logs_finite_losses_and_rmse_and_round_trips(synthetic_faces_root, tmp_path):
    torch.manual_seed(0)
    model = DisentangledAAE(**TINY)
    trainer = _trainer(tmp_path)
    trainer.fit(model, _data(synthetic_faces_root))
    logged = trainer.callback_metrics
    for name in AE_LOGS:
        assert torch.isfinite(logged[f"train/{name}"]), name
    assert logged["val/rmse"] > 0 and logged["val/rmse_mean_image"] > 0
    assert model.mean_image_count > 0
    path = tmp_path / "aae.ckpt"
    trainer.save_checkpoint(path)
    loaded = DisentangledAAE.load_from_checkpoint(path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), model(x))
    torch.testing.assert_close(loaded.mean_image, model.mean_image)
    (first, *_) = trainer.predict(model, _data(synthetic_faces_root))  # what `run` does last
    assert first[keys.PREDS].shape == (16, 3, 32, 32) and len(first[keys.IMAGE_ID]) == 16


def test_evaluation_outputs_are_unit_range_images(synthetic_faces_root, tmp_path):
    model = DisentangledAAE(**TINY)
    trainer = _trainer(tmp_path)
    outputs = []

    class Keep(Callback):
        def on_validation_batch_end(self, trainer, module, out, batch, batch_idx, *args):
            outputs.append(out)

    trainer.callbacks.append(Keep())
    trainer.validate(model, _data(synthetic_faces_root))
    out = outputs[0]
    assert set(out) == set(DisentangledAAE.evaluation_outputs)
    for key in (keys.PREDS, keys.FAKE, keys.REAL):
        assert out[key].shape == (16, 3, 32, 32)
        assert 0 <= out[key].min() and out[key].max() <= 1
    assert not torch.equal(out[keys.FAKE], out[keys.PREDS])


def test_image_size_must_match_the_data(synthetic_faces_root, tmp_path):
    model = DisentangledAAE(**(TINY | {"image_size": 64}))
    with pytest.raises(ValueError, match="image_size"):
        _trainer(tmp_path).fit(model, _data(synthetic_faces_root))


def _label_data(root, stage: str) -> DisentangledAAEDataModule:
    return DisentangledAAEDataModule(
        root=str(root / "celeba"), image_size=32, hist_eq=False, batch_size=16, num_workers=0,
        stage=stage, identities_per_batch=4, images_per_identity=4, persons_per_batch=2,
        clips_per_person=2, frames_per_clip=4, rounds_per_epoch=1,
    )  # fmt: skip


PHI_TINY = TINY | {"phi_hidden": (32,)}


def _snapshot(model) -> dict[str, dict[str, torch.Tensor]]:
    nets = (*PLAYERS, "phi", "phi_inverse")
    return {n: {k: v.clone() for k, v in getattr(model, n).state_dict().items()} for n in nets}


def _changed(before, model) -> set[str]:
    return {
        net
        for net, state in before.items()
        if any(not torch.equal(v, getattr(model, net).state_dict()[k]) for k, v in state.items())
    }


def test_stage_b_trains_phi_only_and_stage_c_everything(synthetic_faces_root, tmp_path):
    torch.manual_seed(0)
    stage_b = DisentangledAAE(**(PHI_TINY | {"stage": "disentangle"}))
    assert not any(p.requires_grad for p in stage_b.encoder.parameters())
    before = _snapshot(stage_b)
    trainer = _trainer(tmp_path, batches=3)
    trainer.fit(stage_b, _label_data(synthetic_faces_root, "disentangle"))
    assert _changed(before, stage_b) == {"phi", "phi_inverse"}  # E, G frozen (BN stats too)
    assert not stage_b.encoder.training and stage_b.phi.training
    for name in ("phi_total", "phi_rec", "phi_cyc", "phi_pose", "phi_identity"):
        assert torch.isfinite(trainer.callback_metrics[f"train/{name}"]), name
    for name in ("rmse_phi", "phi_rec_ratio", "pose_mae_deg"):
        assert trainer.callback_metrics[f"val/{name}"] > 0, name

    stage_c = DisentangledAAE(**(PHI_TINY | {"stage": "joint"}))
    stage_c.load_state_dict(stage_b.state_dict())
    before = _snapshot(stage_c)
    trainer = _trainer(tmp_path, batches=3)
    trainer.fit(stage_c, _label_data(synthetic_faces_root, "joint"))
    assert _changed(before, stage_c) == set(before)
    assert torch.isfinite(trainer.callback_metrics["train/loss_eg"])
    groups = stage_c.configure_optimizers()[0].param_groups
    assert [(g["lr"], g["betas"]) for g in groups] == [(1e-3, (0.0, 0.999)), (1e-4, (0.9, 0.999))]


def test_stage_must_match_the_data_and_factor_sizes_the_latent(synthetic_faces_root, tmp_path):
    model = DisentangledAAE(**(PHI_TINY | {"stage": "disentangle"}))
    with pytest.raises(ValueError, match="stage"):
        _trainer(tmp_path).fit(model, _data(synthetic_faces_root))
    with pytest.raises(ValueError, match="factor_sizes"):
        DisentangledAAE(**(TINY | {"factor_sizes": (3, 32, 32, 30)}))


def test_cosine_decay_takes_every_rate_to_zero_over_the_epochs(synthetic_faces_root, tmp_path):
    model = DisentangledAAE(**(TINY | {"cosine_decay": True}))
    trainer = _trainer(tmp_path, batches=1, max_epochs=2, limit_val_batches=0)
    trainer.fit(model, _data(synthetic_faces_root))
    rates = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
    assert len(rates) == 3 and all(rate == pytest.approx(0.0, abs=1e-12) for rate in rates)
    halfway = DisentangledAAE(**(TINY | {"cosine_decay": True}))
    trainer = _trainer(tmp_path, batches=1, max_epochs=4, limit_val_batches=0, max_steps=6)
    trainer.fit(halfway, _data(synthetic_faces_root))  # 2 of 4 epochs: cos(pi / 2) -> lr / 2
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(TINY["lr"] / 2)
