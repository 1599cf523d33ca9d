"""ExemplarSRModule (spec ``hallucination`` sections 4-6): who updates what (G_S only in its step,
the critic only in its step, ISR + E_Ex + the WNNs only in the main step, in that order; the WNN
group at ``wnn_lr``), no critic without the adversarial term, m = 0 and ``fusion="average"``
batches, per-image PSNR / SSIM (not pooled) and the bicubic baseline as exact epoch means, the
weights guard, a checkpoint round trip and a short fit on the exemplar twin.

x8 from 16 px (128 px faces), narrow widths, batch 4, a random LPIPS trunk.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exemplar_sr_tiny import MODULE as TINY
from lightning import Callback
from quiet_trainer import cpu_trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from callbacks import keys
from callbacks.image_quality.ssim import ssim
from datamodules.exemplar_sr import CelebAExemplarDataModule
from lightning_modules.components.pretrained import WeightsNotFoundError
from lightning_modules.exemplar_sr import ExemplarSRModule
from lightning_modules.exemplar_sr.module import CRITIC_TERMS, MAIN_TERMS, SMALL_TERMS, TRAIN_LOGS

LOW, HIGH = 16, 128
#: prefixes of the parameters each optimizer may change
SMALL, CRITIC = ("generator.small_generator.",), ("critic.",)
MAIN = ("generator.isr.", "generator.encoder.", "generator.pwave.")


class Rows(Dataset):
    """Random faces in [-1, 1]: ``count`` items with ``m`` exemplars each."""

    def __init__(self, count: int = 4, m: int = 3) -> None:
        self.count, self.m = count, m

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(index)
        return {
            "image_lr": torch.rand(3, LOW, LOW, generator=g) * 2 - 1,
            "image_hr": torch.rand(3, HIGH, HIGH, generator=g) * 2 - 1,
            "exemplars": torch.rand(self.m, 3, HIGH, HIGH, generator=g) * 2 - 1,
        }


@pytest.fixture(scope="module")
def template() -> ExemplarSRModule:
    torch.manual_seed(0)
    return ExemplarSRModule(**TINY)


def _module(template: ExemplarSRModule, **changes) -> ExemplarSRModule:
    if not changes:
        return copy.deepcopy(template)
    torch.manual_seed(0)
    return ExemplarSRModule(**(TINY | changes))


def _fit(module, tmp_path, m: int = 3, callbacks=(), **kwargs):
    trainer = cpu_trainer(
        tmp_path, limit_train_batches=1, limit_val_batches=0, callbacks=list(callbacks), **kwargs
    )
    trainer.fit(module, DataLoader(Rows(4, m), batch_size=4))
    return trainer


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


class StepRecorder(Callback):
    """Which parameters each optimizer step changed: [(optimizer index, changed names)]."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, set[str]]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        for index, optimizer in enumerate(trainer.optimizers):
            step = optimizer.step

            def recorded(*args, _index=index, _step=step, **kwargs):
                before = _params(pl_module)
                out = _step(*args, **kwargs)
                self.steps.append((_index, _changed(before, _params(pl_module))))
                return out

            optimizer.step = recorded


def _only(names: set[str], prefixes: tuple[str, ...]) -> bool:
    return bool(names) and all(name.startswith(prefixes) for name in names)


# --- construction --------------------------------------------------------------------------------


def test_perceptual_network_is_never_silently_random(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"'vgg16'.*not found"):
        ExemplarSRModule(**(TINY | {"perceptual_weights": "vgg16", "random_trunks": False}))
    with pytest.raises(ValueError, match="not both"):
        ExemplarSRModule(**(TINY | {"perceptual_weights": "vgg16"}))
    with pytest.raises(ValueError, match="needs trunk_weights"):
        ExemplarSRModule(**(TINY | {"random_trunks": False}))
    with pytest.raises(ValueError, match="id_net"):
        ExemplarSRModule(**(TINY | {"id_net": "emotion"}))


def test_scale_sets_the_up_blocks(template):
    assert len(template.generator.isr.up_blocks) == 3
    x16 = ExemplarSRModule(
        **(TINY | {"scale": 16, "isr_widths": (8,) * 4, "encoder_widths": (4, 8, 8, 8)})
    )
    assert len(x16.generator.isr.up_blocks) == 4
    sr, weights = x16.hallucinate(torch.zeros(4, 3, 8, 8), torch.zeros(4, 2, 3, HIGH, HIGH))
    assert sr.shape == (4, 3, HIGH, HIGH) and weights[0].shape == (4, 2, 1, 8, 8)


# --- training ------------------------------------------------------------------------------------


def test_each_optimizer_changes_only_its_own_networks_in_order(template, tmp_path):
    module = _module(template)
    recorder = StepRecorder()
    before = _params(module)
    trainer = _fit(module, tmp_path, callbacks=[recorder])
    main, small, critic = trainer.optimizers
    assert [index for index, _ in recorder.steps] == [1, 2, 0]  # G_S, critic, main
    changed = dict(recorder.steps)
    assert _only(changed[1], SMALL)
    assert _only(changed[2], CRITIC)
    assert _only(changed[0], MAIN)
    for prefix in MAIN:  # ISR, E_Ex and the WNNs all move
        assert any(name.startswith(prefix) for name in changed[0]), prefix
    assert not any(name.startswith("lpips.") for name in _changed(before, _params(module)))
    # the WNNs are the main Adam's second group, at wnn_lr
    wnn = {id(p) for p in module.generator.pwave.parameters()}
    assert [group["lr"] for group in main.param_groups] == [3e-3, 2e-4]
    assert {id(p) for p in main.param_groups[1]["params"]} == wnn
    assert small.param_groups[0]["lr"] == 3e-3 and critic.param_groups[0]["lr"] == 3e-3
    logged = trainer.callback_metrics
    names = (*SMALL_TERMS, *MAIN_TERMS, "critic_wgan", "gp", "loss_critic", "w_entropy")
    for name in names:
        assert math.isfinite(logged[f"train/{name}"]), name
    assert "train/drift" not in logged  # off by default
    total = logged["train/content"] + 1e-3 * logged["train/adv"] + logged["train/perceptual"]
    torch.testing.assert_close(logged["train/loss_main"], total)


def test_without_adversarial_term_no_critic_is_built(tmp_path):
    module = _module(None, lambda_adv=0.0)
    assert module.critic is None
    assert not any(name.startswith("critic") for name, _ in module.named_parameters())
    recorder = StepRecorder()
    trainer = _fit(module, tmp_path, callbacks=[recorder])
    assert len(trainer.optimizers) == 2
    assert [index for index, _ in recorder.steps] == [1, 0]
    assert not {f"train/{name}" for name in (*CRITIC_TERMS, "adv")} & set(trainer.callback_metrics)


def test_no_exemplars_and_average_fusion(template, tmp_path):
    module = _module(template)
    recorder = StepRecorder()
    trainer = _fit(module, tmp_path, m=0, callbacks=[recorder])
    main_changed = dict(recorder.steps)[0]
    assert _only(main_changed, ("generator.isr.",))  # E_Ex and the WNNs take no part
    assert trainer.callback_metrics["train/w_entropy"] == 0
    average = _module(template, fusion="average", lambda_p=0.0, drift=1e-3)
    trainer = _fit(average, tmp_path, m=2)
    assert len(trainer.optimizers[0].param_groups) == 1  # no WNN group
    assert "train/perceptual" not in trainer.callback_metrics  # not computed at weight 0
    assert math.isfinite(trainer.callback_metrics["train/drift"])


# --- evaluation ----------------------------------------------------------------------------------


class FirstExemplar(nn.Module):
    """A stand-in generator whose I_SR is the first exemplar: known predictions."""

    def forward(self, lr, exemplars):
        w = exemplars.new_zeros(exemplars.shape[0], exemplars.shape[1], 1, LOW, LOW)
        return exemplars[:, 0], {"weights": (w, w)}


class KnownPairs(Dataset):
    """Random targets, predictions off by a per-item constant (unequal MSEs)."""

    offsets = (0.02, 0.1, 0.3)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(index)
        hr = torch.rand(3, HIGH, HIGH, generator=g) * 1.6 - 0.8
        return {
            "image_lr": torch.rand(3, LOW, LOW, generator=g) * 2 - 1,
            "image_hr": hr,
            "exemplars": (hr + 2 * self.offsets[index])[None],  # [-1, 1] scale: x2
        }


def test_psnr_is_per_image_and_the_bicubic_baseline_is_logged(template, tmp_path):
    module = _module(template)
    module.generator = FirstExemplar()
    outputs = []

    class Keep(Callback):
        def on_validation_batch_end(self, trainer, pl_module, out, *args) -> None:
            outputs.append(out)

    trainer = cpu_trainer(tmp_path, callbacks=[Keep()])
    trainer.validate(module, DataLoader(KnownPairs(), batch_size=2), verbose=False)  # 2 + 1
    logged = trainer.callback_metrics
    items = [KnownPairs()[i] for i in range(3)]
    hr = np.stack([((item["image_hr"].numpy() + 1) / 2).clip(0, 1) for item in items])
    sr = np.stack([((item["exemplars"][0].numpy() + 1) / 2).clip(0, 1) for item in items])
    mse = ((sr.astype(np.float64) - hr) ** 2).reshape(3, -1).mean(axis=1)
    per_image = np.mean(10 * np.log10(1 / mse))
    pooled = 10 * np.log10(1 / mse.mean())
    assert logged["val/psnr"].item() == pytest.approx(per_image, abs=1e-4)
    assert abs(per_image - pooled) > 1.0  # the pooled number differs, and is not logged
    assert logged["val/psnr"].item() != pytest.approx(pooled, abs=0.5)
    lr = torch.stack([item["image_lr"] for item in items])
    bicubic = ((F.interpolate(lr, scale_factor=8, mode="bicubic") + 1) / 2).clamp(0, 1)
    hr_t = torch.from_numpy(hr)
    bicubic_mse = (bicubic.double() - hr_t).square().flatten(1).mean(1)
    expected = (10 * torch.log10(1 / bicubic_mse)).mean()
    assert logged["val/psnr_bicubic"].item() == pytest.approx(expected.item(), abs=1e-4)
    expected_ssim = ssim(bicubic, hr_t.float(), data_range=1.0).mean()
    assert logged["val/ssim_bicubic"].item() == pytest.approx(expected_ssim.item(), abs=1e-5)
    expected_ssim = ssim(torch.from_numpy(sr), hr_t, data_range=1.0).mean()
    assert logged["val/ssim"].item() == pytest.approx(expected_ssim.item(), abs=1e-5)
    panels = outputs[0]
    assert set(panels) == {keys.INPUTS, keys.PREDS, keys.TARGET_IMAGES}
    torch.testing.assert_close(panels[keys.INPUTS], bicubic[:2])
    assert all(0 <= v.min() and v.max() <= 1 for v in panels.values())


def test_checkpoint_round_trip(template, tmp_path):
    module = _module(template)
    trainer = _fit(module, tmp_path)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    loaded = ExemplarSRModule.load_from_checkpoint(path)
    assert dict(loaded.hparams) == dict(module.hparams)
    batch = next(iter(DataLoader(Rows(4), batch_size=4)))
    module.eval(), loaded.eval()
    sr, weights = module.hallucinate(batch["image_lr"], batch["exemplars"])
    sr2, weights2 = loaded.hallucinate(batch["image_lr"], batch["exemplars"])
    torch.testing.assert_close(sr2, sr, rtol=0, atol=0)
    torch.testing.assert_close(weights2, weights, rtol=0, atol=0)
    for name, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_short_fit_on_the_exemplar_twin(template, tmp_path):
    data = CelebAExemplarDataModule(
        root=str(tmp_path / "celeba"), synthetic="tiny", num_workers=0, batch_size=4
    )
    module = _module(template)
    trainer = cpu_trainer(
        tmp_path, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1
    )
    trainer.fit(module, data)
    logged = dict(trainer.callback_metrics)
    trainer.test(module, data, verbose=False)
    logged |= trainer.callback_metrics
    for stage in ("val", "test"):
        for name in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic"):
            assert math.isfinite(logged[f"{stage}/{name}"]), (stage, name)
    assert 0 < logged["test/ssim_bicubic"] <= 1 and logged["test/psnr_bicubic"] > 5
    assert math.isfinite(logged["train/loss_main"])


# --- under DDP -----------------------------------------------------------------------------------


@pytest.mark.slow  # two gloo processes
def test_under_ddp_every_rank_holds_the_same_weights_rates_and_epoch_means(tmp_path):
    """ddp_exemplar_sr_module.py, with the critic: each of the three updates averages its own
    gradients over the ranks, so the generator and the critic end equal on both ranks; the rates
    are the configured ones; each epoch value is the mean over both ranks' steps (equal batches),
    the same on both ranks, while each rank's step values are its own rows'."""
    from ddp_exemplar_sr_module import SETTINGS
    from ddp_runs import run_script

    run_script("ExemplarSR on 2 processes", ["tests/ddp_exemplar_sr_module.py", tmp_path, 2])
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    state = ranks[0]["state"]
    assert state.keys() == ranks[1]["state"].keys()
    assert {name.split(".")[0] for name in state} == {"generator", "critic"}
    for name, value in state.items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    rates = [[SETTINGS["lr"], SETTINGS["wnn_lr"]], [SETTINGS["lr"]], [SETTINGS["critic_lr"]]]
    assert ranks[0]["lr"] == ranks[1]["lr"] == rates  # main (ISR + E_Ex, WNNs), G_S, critic
    for name in TRAIN_LOGS:
        steps = [value for rank in ranks for value in rank["steps"][name]]
        assert len(steps) == 4, name  # 16 rows, batches of 4, two ranks
        assert ranks[0]["epoch"][name] == ranks[1]["epoch"][name], name
        assert ranks[0]["epoch"][name] == pytest.approx(sum(steps) / 4, rel=1e-6), name
    assert ranks[0]["steps"]["content"] != ranks[1]["steps"]["content"]  # each rank its rows
