"""ISTRC's BEGAN: the networks' shapes and layer plan, what each training step does (each player
changed alone, detached fakes in D's step, the losses and k_t of the BEGAN equations on the values
the step logged), the evaluation baseline, plateau halving and a checkpoint round trip.

The equations' own values are tested with the components (tests/test_adversarial_losses.py,
tests/test_began_equilibrium.py); here the module's wiring of them. Data: random [-1, 1] images.
"""

from __future__ import annotations

import doctest

import pytest
import torch
from lightning import LightningDataModule, Trainer
from lightning.pytorch.callbacks import Callback
from quiet_trainer import cpu_trainer
from torch import nn
from torch.utils.data import DataLoader

import lightning_modules.istrc.began as began_module
import lightning_modules.istrc.began_networks as networks_module
from lightning_modules.istrc.began import BEGAN
from lightning_modules.istrc.began_networks import BEGANDecoder, BEGANDiscriminator, BEGANEncoder

TINY = {"image_size": 32, "filters": 8, "code_size": 16}
# lambda_k large enough that k_t moves (and meets its bound 1) within a few steps
CONTROL = {"gamma": 0.5, "lambda_k": 1.0, "k_init": 0.9}


class RandomImages(LightningDataModule):
    """Uniform [-1, 1] images as ``{"image": ...}`` batches, declared signed-normalised."""

    def __init__(self, size: int = 32, count: int = 12, mean: float = 0.5) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(count, 3, size, size, generator=generator) * 2 - 1
        self.items = [{"image": image} for image in images]
        self.image_mean = self.image_std = (mean, mean, mean)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.items[:8], batch_size=4, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.items[8:], batch_size=3)

    test_dataloader = val_dataloader


def _trainer(tmp_path, **kwargs) -> Trainer:
    return cpu_trainer(tmp_path, **({"limit_train_batches": 2, "limit_val_batches": 0} | kwargs))


# --- networks ------------------------------------------------------------------------------------


def test_docstring_examples():
    assert doctest.testmod(networks_module, extraglobs={"torch": torch}).failed == 0


@pytest.mark.parametrize(("size", "widths"), [(64, 4), (32, 3)])
def test_shapes_at_64_and_32_px(size, widths):
    n, code = 8, 16
    x = torch.rand(2, 3, size, size) * 2 - 1
    encoder = BEGANEncoder(size, n, code)
    assert encoder.blocks(x).shape == (2, widths * n, 8, 8)  # 4n (64 px) or 3n (32 px) at 8 x 8
    assert encoder(x).shape == (2, code)
    assert BEGANDecoder(size, n, code)(torch.zeros(5, code)).shape == (5, 3, size, size)
    discriminator = BEGANDiscriminator(size, n, code)
    assert discriminator(x).shape == x.shape
    assert discriminator.decode(discriminator.encode(x)).shape == x.shape


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_layer_plan_of_the_spec_tables_at_64_px():
    n = 128
    encoder, decoder = BEGANEncoder(), BEGANDecoder()  # the defaults: 64 px, n = 128, Nh = 64
    # (in, out, stride) of every conv3 of D_enc, E0 to E4
    plan = [(3, n, 1)]
    plan += [(n, n, 1), (n, n, 1), (n, n, 2), (n, 2 * n, 1), (2 * n, 2 * n, 1), (2 * n, 2 * n, 2)]
    plan += [(2 * n, 3 * n, 1), (3 * n, 3 * n, 1), (3 * n, 3 * n, 2)]
    plan += [(3 * n, 4 * n, 1), (4 * n, 4 * n, 1)]
    convs = _convs(encoder)
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == plan
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert _count(encoder, nn.ELU) == len(convs) == 12  # ELU after every conv
    assert (encoder.h.in_features, encoder.h.out_features) == (4 * n * 64, 64)
    assert isinstance(list(encoder.modules())[-1], nn.Linear)  # h: no activation after it
    assert (decoder.fc.in_features, decoder.fc.out_features) == (64, n * 64)
    convs = _convs(decoder)
    assert [(c.in_channels, c.out_channels) for c in convs] == [(n, n)] * 8 + [(n, 3)]
    assert all(c.stride == (1, 1) and c.kernel_size == (3, 3) for c in convs)
    assert _count(decoder, nn.ELU) == 8 and decoder.blocks[-1] is convs[-1]  # out: no activation
    ups = [m for m in decoder.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 3 and all(u.mode == "nearest" and u.scale_factor == 2 for u in ups)


def test_one_fewer_down_and_up_block_at_32_px():
    encoder, decoder = BEGANEncoder(**TINY), BEGANDecoder(**TINY)
    assert sum(c.stride == (2, 2) for c in _convs(encoder)) == 2
    assert _count(encoder, nn.ELU) == len(_convs(encoder)) == 9
    assert _count(decoder, nn.Upsample) == 2 and _count(decoder, nn.ELU) == 6


def test_generator_and_decoder_share_the_structure_not_the_parameters():
    model = BEGAN(**TINY)
    g, d_dec = model.generator, model.discriminator.decoder
    assert repr(g) == repr(d_dec)
    shapes = [[p.shape for p in net.parameters()] for net in (g, d_dec)]
    assert shapes[0] == shapes[1]
    assert not {id(p) for p in g.parameters()} & {id(p) for p in d_dec.parameters()}
    assert not torch.equal(g.fc.weight, d_dec.fc.weight)


@pytest.mark.parametrize("size", [8, 48, 0])
def test_image_sizes_off_the_8_x_2_power_d_ladder_are_refused(size):
    with pytest.raises(ValueError, match="image_size must be 8"):
        BEGANEncoder(size, 8, 16)


# --- one fit, every network update recorded ------------------------------------------------------


class StepRecorder(Callback):
    """The batch, k_t before the step, and the step values the module logged."""

    def __init__(self) -> None:
        self.images, self.k_before, self.logged = None, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.images = batch["image"]
        self.k_before.append(float(module.equilibrium.k))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        names = ("loss_d", "loss_g", "loss_real", "k", "m_global")
        step = {n: float(trainer.callback_metrics[f"train/{n}_step"]) for n in names}
        self.logged.append(step | {"k_buffer": float(module.equilibrium.k)})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 2-epoch x 2-batch fit whose ``network_update`` calls are checked and recorded."""
    torch.manual_seed(0)
    model = BEGAN(**TINY, **CONTROL)
    steps = StepRecorder()
    inputs: list[torch.Tensor] = []
    model.generator.register_forward_pre_hook(lambda net, args: inputs.append(args[0]))
    updates: list[dict] = []
    update = began_module.network_update
    d_weight = id(model.discriminator.encoder.h.weight)  # tells the two optimizers apart

    def recording_update(module, optimizer, loss_fn, *detached, **kwargs):
        own = {id(p) for group in optimizer.param_groups for p in group["params"]}
        player = "discriminator" if d_weight in own else "generator"
        record = {"player": player, **_before_update(module, player, loss_fn, detached, steps)}
        if player == "generator":
            with torch.no_grad():
                loss_fn()  # G's step draws G(z_G): the hook keeps z_G
            record["hand"] = _hand_generator_loss(module, inputs[-1])
        before = {name: p.detach().clone() for name, p in module.named_parameters()}
        record["loss"] = float(update(module, optimizer, loss_fn, *detached, **kwargs))
        record["changed"] = {
            name.split(".")[0]
            for name, p in module.named_parameters()
            if not torch.equal(before[name], p)
        }
        updates.append(record)
        return torch.tensor(record["loss"])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(began_module, "network_update", recording_update)
        trainer = _trainer(tmp_path_factory.mktemp("fit"), max_epochs=2, callbacks=[steps])
        trainer.fit(model, RandomImages())
    return {"updates": updates, "steps": steps, "model": model}


def _before_update(module, player, loss_fn, detached, steps) -> dict:
    """D's step: are its fakes cut from G's graph? and L_D computed by hand, both before it."""
    if player != "discriminator":
        return {}
    (fake,) = detached
    loss = loss_fn(fake.detach())  # as network_update calls it, but with G's parameters live
    grads = torch.autograd.grad(loss, list(module.generator.parameters()), allow_unused=True)
    with torch.no_grad():
        d, x, k = module.discriminator, steps.images, float(module.equilibrium.k)
        hand = (x - d(x)).abs().mean() - k * (fake - d(fake)).abs().mean()
    return {"fake_requires_grad": fake.requires_grad, "g_grads": grads, "hand": float(hand)}


def _hand_generator_loss(module, z: torch.Tensor) -> float:
    with torch.no_grad():
        fake = module.generator(z)
        return float((fake - module.discriminator(fake)).abs().mean())


def test_each_update_changes_only_its_own_network(recorded):
    players = [(u["player"], u["changed"]) for u in recorded["updates"]]
    assert players == [("discriminator", {"discriminator"}), ("generator", {"generator"})] * 4


def test_the_discriminator_step_gets_detached_fakes(recorded):
    d_steps = [u for u in recorded["updates"] if u["player"] == "discriminator"]
    assert len(d_steps) == 4
    for update in d_steps:
        assert not update["fake_requires_grad"]
        assert all(grad is None for grad in update["g_grads"])  # L_D has no path into G


def test_the_steps_minimize_the_began_losses(recorded):
    # L_D = L(x) - k_t L(G(z_D)) and L_G = L(G(z_G)), computed by hand before each update
    for update in recorded["updates"]:
        assert update["loss"] == pytest.approx(update["hand"], rel=1e-5), update["player"]
    d_losses = [u["loss"] for u in recorded["updates"] if u["player"] == "discriminator"]
    g_losses = [u["loss"] for u in recorded["updates"] if u["player"] == "generator"]
    logged = recorded["steps"].logged
    assert [s["loss_d"] for s in logged] == pytest.approx(d_losses, rel=1e-6)
    assert [s["loss_g"] for s in logged] == pytest.approx(g_losses, rel=1e-6)


def test_k_follows_the_proportional_control_on_the_logged_losses(recorded):
    gamma, lambda_k = CONTROL["gamma"], CONTROL["lambda_k"]
    steps = recorded["steps"]
    k = CONTROL["k_init"]
    for before, step in zip(steps.k_before, steps.logged, strict=True):
        assert before == pytest.approx(k, abs=1e-6)
        balance = gamma * step["loss_real"] - step["loss_g"]
        k = min(max(k + lambda_k * balance, 0.0), 1.0)
        assert step["k"] == pytest.approx(k, abs=1e-6)
        assert step["k_buffer"] == pytest.approx(k, abs=1e-6)
        assert step["m_global"] == pytest.approx(step["loss_real"] + abs(balance), rel=1e-6)
        assert 0.0 <= step["k_buffer"] <= 1.0
    assert any(s["k_buffer"] in (0.0, 1.0) for s in steps.logged)  # the clip was exercised


# --- evaluation, schedules, checkpoints ----------------------------------------------------------


def test_validation_logs_l1_beside_the_mean_image_baseline(tmp_path):
    data = RandomImages()
    model = BEGAN(**TINY)
    (logged,) = _trainer(tmp_path, limit_val_batches=1.0).validate(model, data, verbose=False)
    train = torch.stack([item["image"] for item in data.items[:8]])
    val = torch.stack([item["image"] for item in data.items[8:]])
    torch.testing.assert_close(model.mean_image, train.mean(0))
    baseline = (val - train.mean(0)).abs().mean()
    assert logged["val/l1_mean_image"] == pytest.approx(float(baseline), rel=1e-6)
    with torch.no_grad():
        assert logged["val/l1"] == pytest.approx(
            float((val - model.discriminator(val)).abs().mean())
        )


def _learning_rates(trainer) -> list[float]:
    rates = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
    assert len(rates) == 2 and rates[0] == rates[1]  # G and D are cut together
    return rates[:1]


@pytest.mark.parametrize(
    ("measures", "expected"),
    [
        ([0.3] * 5, [1, 1, 1, 0.5, 0.5, 0.25]),  # best, 2 flat epochs (> patience 1): halve; ...
        ([0.5, 0.4, 0.3, 0.2, 0.1], [1] * 6),  # improving: never cut
    ],
)
def test_plateau_of_the_epoch_m_global_halves_both_rates(tmp_path, measures, expected):
    model = BEGAN(**TINY, lr=1e-3)
    epoch_values = iter(measures)
    model.equilibrium.update = lambda real, fake: torch.tensor(next(epoch_values))
    rates: list[float] = []

    class Rates(Callback):
        def on_train_epoch_start(self, trainer, module):
            rates.extend(_learning_rates(trainer))

        def on_train_end(self, trainer, module):
            rates.extend(_learning_rates(trainer))

    trainer = _trainer(tmp_path, max_epochs=5, limit_train_batches=1, callbacks=[Rates()])
    trainer.fit(model, RandomImages())
    assert rates == pytest.approx([1e-3 * r for r in expected])


def test_checkpoint_round_trip_keeps_k_and_the_mean_image(tmp_path):
    torch.manual_seed(0)
    model = BEGAN(**TINY, **CONTROL)
    trainer = _trainer(tmp_path)
    trainer.fit(model, RandomImages())
    assert float(model.equilibrium.k) != CONTROL["k_init"]
    path = tmp_path / "began.ckpt"
    trainer.save_checkpoint(path)
    loaded = BEGAN.load_from_checkpoint(path)
    assert float(loaded.equilibrium.k) == float(model.equilibrium.k)
    assert loaded.hparams.lambda_k == CONTROL["lambda_k"] and int(loaded.mean_image_count) == 8
    torch.testing.assert_close(loaded.mean_image, model.mean_image)
    samples = [m.sample(3, torch.Generator().manual_seed(1)) for m in (model, loaded)]
    assert samples[0].shape == (3, 3, 32, 32)
    torch.testing.assert_close(samples[0], samples[1])


def test_data_of_another_range_or_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="image_mean"):  # [0, 1] images, not [-1, 1]
        _trainer(tmp_path).fit(BEGAN(**TINY), RandomImages(mean=0.0))
    with pytest.raises(ValueError, match=r"takes images \(B, 3, 32, 32\)"):
        _trainer(tmp_path).fit(BEGAN(**TINY), RandomImages(size=64))


# --- DDP -----------------------------------------------------------------------------------------


@pytest.mark.slow  # two gloo processes
def test_under_ddp_every_rank_holds_the_same_k_weights_and_rates(tmp_path):
    """ddp_istrc_began.py: k_t moves on the losses of all ranks' images (the means of the ranks'
    batch means, equal batches) and ends equal on every rank, as do the weights, the mean image,
    the epoch M_global and the rates; each rank draws its own noise."""
    import json

    from ddp_istrc_began import images
    from ddp_runs import run_script

    run_script("BEGAN on 2 processes", ["tests/ddp_istrc_began.py", tmp_path, 2])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for key in ("lr", "m_global_epoch", "state"):
        assert ranks[0][key] == ranks[1][key], key
    mean_image = torch.tensor(ranks[0]["state"]["mean_image"])
    torch.testing.assert_close(mean_image, images().mean(0))
    k = 0.5
    for step_0, step_1 in zip(ranks[0]["steps"], ranks[1]["steps"], strict=True):
        assert step_0["z"] != step_1["z"]
        assert step_0["k_buffer"] == step_1["k_buffer"] and step_0["m_global"] == step_1["m_global"]
        loss_real = (step_0["loss_real"] + step_1["loss_real"]) / 2
        balance = 0.5 * loss_real - (step_0["loss_g"] + step_1["loss_g"]) / 2
        k = min(max(k + balance, 0.0), 1.0)  # lambda_k = 1
        assert step_0["k_buffer"] == pytest.approx(k, abs=1e-6)
        assert step_0["m_global"] == pytest.approx(loss_real + abs(balance), rel=1e-6)
    assert len(ranks[0]["steps"]) == 4  # 2 epochs x 2 batches of 4 per rank
    losses = [[step["loss_real"] for step in rank["steps"]] for rank in ranks]
    assert losses[0] != losses[1]  # the ranks saw different images: k_t used both
