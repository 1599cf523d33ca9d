"""components.adversarial_update: each optimizer changes only its own networks, discriminators see
detached fakes, clipping bounds the step, and bad losses are refused."""

from __future__ import annotations

import json

import pytest
import torch
from ddp_runs import run_script
from lightning import LightningModule, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.components.adversarial_update import network_update, optimizer_parameters


class TinyGAN(LightningModule):
    """G: 2 -> 2 linear, D: 2 -> 1 linear; one D update then one G update per step, recording
    what each update saw and changed."""

    def __init__(self, clip: float | None = None, lr: float = 0.1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = nn.Linear(2, 2), nn.Linear(2, 1)
        self.clip, self.lr = clip, lr
        self.records: list[dict] = []

    def training_step(self, batch: list[Tensor], batch_idx: int) -> None:
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        fake = self.generator(torch.randn_like(real))
        record: dict = {}

        def d_loss(f: Tensor) -> Tensor:
            record["d_input_requires_grad"] = f.requires_grad
            record["d_input_grad_fn"] = f.grad_fn
            record["g_frozen_in_d"] = not any(p.requires_grad for p in self.generator.parameters())
            return self.discriminator(f).mean() - self.discriminator(real).mean()

        def g_loss() -> Tensor:
            record["d_frozen_in_g"] = not any(
                p.requires_grad for p in self.discriminator.parameters()
            )
            return -self.discriminator(fake).mean()

        before = self._snapshot()
        g_grad = [None if p.grad is None else p.grad.clone() for p in self.generator.parameters()]
        network_update(self, opt_d, d_loss, fake, gradient_clip_val=self.clip)
        after_d = self._snapshot()
        record["g_grad_kept"] = all(
            (a is None and p.grad is None) or (a is not None and torch.equal(a, p.grad))
            for a, p in zip(g_grad, self.generator.parameters(), strict=True)
        )
        network_update(self, opt_g, g_loss, gradient_clip_val=self.clip)
        after_g = self._snapshot()
        record["changed_by_d"] = self._changed(before, after_d)
        record["changed_by_g"] = self._changed(after_d, after_g)
        record["step_d"] = self._step_norm(before, after_d, "discriminator")
        record["all_trainable_after"] = all(p.requires_grad for p in self.parameters())
        self.records.append(record)

    def configure_optimizers(self):  # order: G, D
        return (
            torch.optim.SGD(self.generator.parameters(), lr=self.lr),
            torch.optim.SGD(self.discriminator.parameters(), lr=self.lr),
        )

    def _snapshot(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.named_parameters()}

    @staticmethod
    def _changed(a: dict[str, Tensor], b: dict[str, Tensor]) -> set[str]:
        return {k.split(".")[0] for k in a if not torch.equal(a[k], b[k])}

    @staticmethod
    def _step_norm(a: dict[str, Tensor], b: dict[str, Tensor], net: str) -> float:
        parts = [(b[k] - a[k]).flatten() for k in a if k.startswith(net)]
        return torch.cat(parts).norm().item()


def _fit(model: LightningModule, steps: int = 3) -> None:
    data = DataLoader(TensorDataset(torch.randn(4 * steps, 2)), batch_size=4)
    trainer = Trainer(  # one epoch of `steps` batches (max_steps counts every optimizer's steps)
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data)


def test_each_optimizer_changes_only_its_own_network():
    torch.manual_seed(0)
    model = TinyGAN()
    _fit(model)
    assert len(model.records) == 3
    for record in model.records:
        assert record["changed_by_d"] == {"discriminator"}
        assert record["changed_by_g"] == {"generator"}
        assert record["g_frozen_in_d"] and record["d_frozen_in_g"]
        assert record["g_grad_kept"]  # the D update leaves G's gradients alone
        assert record["all_trainable_after"]  # requires_grad restored after each update


def test_the_discriminator_sees_detached_fakes():
    torch.manual_seed(1)
    model = TinyGAN()
    _fit(model, steps=1)
    (record,) = model.records
    assert record["d_input_requires_grad"] is False and record["d_input_grad_fn"] is None


def test_gradient_clipping_bounds_the_step():
    torch.manual_seed(2)
    free, clipped = TinyGAN(lr=1.0), TinyGAN(clip=1e-3, lr=1.0)
    clipped.load_state_dict(free.state_dict())
    _fit(free, steps=1)
    _fit(clipped, steps=1)
    assert free.records[0]["step_d"] > 1e-2
    # SGD with lr 1: the step is the clipped gradient, norm <= 1e-3
    assert clipped.records[0]["step_d"] == pytest.approx(1e-3, rel=1e-4)


class BadLoss(TinyGAN):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def training_step(self, batch: list[Tensor], batch_idx: int) -> None:
        (real,) = batch
        _, opt_d = self.optimizers()
        if self.kind == "vector":
            network_update(self, opt_d, lambda: self.discriminator(real).squeeze(1))
        elif self.kind == "misses_a_parameter":  # the loss does not reach the bias
            network_update(self, opt_d, lambda: (real @ self.discriminator.weight.T).mean())
        else:
            network_update(
                self, opt_d, lambda: self.discriminator(real).mean(), gradient_clip_val=0
            )


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("vector", "scalar"),
        ("misses_a_parameter", "does not reach"),
        ("zero_clip", "gradient_clip_val"),
    ],
)
def test_bad_losses_are_refused(kind, match):
    with pytest.raises(ValueError, match=match):
        _fit(BadLoss(kind), steps=1)


def test_optimizer_parameters_skip_frozen_ones():
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.bias.requires_grad_(False)
    assert optimizer_parameters(opt) == [net.weight]


@pytest.mark.slow  # two fits in fresh processes, one of them with 2 ranks
def test_a_gan_step_under_ddp_ends_where_one_process_does(tmp_path):
    """ddp_adversarial_update.py: D update, then G update through the frozen D, plain
    ``strategy="ddp"``; two ranks on half of each batch end where one process on whole batches
    does, and both ranks hold the same weights."""
    results = {}
    for devices in (1, 2):
        out = tmp_path / str(devices)
        out.mkdir()
        run_script(
            f"GAN on {devices} process(es)", ["tests/ddp_adversarial_update.py", out, devices]
        )
        results[devices] = [
            {k: torch.tensor(v) for k, v in json.loads((out / f"rank{r}.json").read_text()).items()}
            for r in range(devices)
        ]
    (single,), ranks = results[1], results[2]
    for name, value in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6)
