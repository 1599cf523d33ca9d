"""USTModule (spec ``ust`` sections 4, 6 and 10): who updates what (each optimizer changes only
its own networks, the frozen LPIPS / Gram networks never), detached fakes in the D step, every
term of Eqs. 4.2-4.8 logged and finite, the total as the weighted sum of the logged terms, the
per-iteration StepLR, ROI on a known mask, the weights guard, a short fit on the VITON twin with
its val/test take-off and try-on ROI metrics (exact epoch means), and a checkpoint round trip.

Tiny widths at 64 x 48 with random LPIPS / VGG trunks; the LSGAN values themselves are tested in
``test_ust_networks.py``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from lightning import Callback
from quiet_trainer import cpu_trainer
from torch.utils.data import DataLoader, Dataset, Subset
from ust_tiny import MODULE as TINY

from callbacks.image_quality.ssim import ssim
from datamodules.viton import VitonDataModule
from lightning_modules.components.pretrained import WeightsNotFoundError
from lightning_modules.ust import USTModule, crop_resize, roi
from lightning_modules.ust.masks import remove_item, white_fill
from lightning_modules.ust.module import CROSS_LOGS, EVAL_LOGS, G_PARTS, G_TERMS, TRAIN_LOGS

H, W = 64, 48
#: tiny widths, 2-scale PatchGANs of 3 layers (64 x 48), random LPIPS / VGG trunks: ``TINY``
GENERATOR_PARTS = ("content_a", "content_b", "style", "decoder_a", "decoder_b")
FROZEN = ("lpips", "gram")


def _item(index: int) -> dict[str, torch.Tensor]:
    """One made-up unpaired row: a person with a box mask (seeded by ``index``) and an item."""
    g = torch.Generator().manual_seed(index)
    image_a = torch.rand(3, H, W, generator=g) * 2 - 1
    image_b = torch.rand(3, H, W, generator=g) * 2 - 1
    mask = torch.zeros(1, H, W)
    mask[:, 10 + index % 3 : 50, 8 : 40 - index % 4] = 1
    return {
        "image_a": image_a,
        "mask_a": mask,
        "context_a": remove_item(image_a[None], mask[None])[0],
        "masked_a": white_fill(image_a[None], mask[None])[0],
        "image_b": image_b,
    }


class Rows(Dataset):
    def __init__(self, count: int = 4) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return _item(index)


@pytest.fixture(scope="module")
def template() -> USTModule:
    """One tiny module, built once (the random VGG trunks take seconds); tests copy it."""
    torch.manual_seed(0)
    return USTModule(**TINY)


def _module(template: USTModule, **changes) -> USTModule:
    return copy.deepcopy(template) if not changes else USTModule(**(TINY | changes))


def _fit(module: USTModule, tmp_path, batches: int = 1, callbacks=(), **kwargs):
    trainer = cpu_trainer(
        tmp_path, limit_train_batches=batches, limit_val_batches=0, callbacks=list(callbacks)
    )
    trainer.fit(module, DataLoader(Rows(2 * batches), batch_size=2), **kwargs)
    return trainer


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _changed(before: dict, after: dict, prefix: str) -> list[bool]:
    return [not torch.equal(before[n], after[n]) for n in before if n.startswith(prefix)]


# --- ROI -----------------------------------------------------------------------------------------


def test_roi_on_a_known_mask():
    image = torch.linspace(-1, 1, 3 * H * W).view(1, 3, H, W)
    mask = torch.zeros(1, 1, H, W)
    mask[..., 12:44, 6:30] = 1  # a 32 x 24 box
    mask[..., 20, 10] = 0  # a hole: white in the ROI, and not the box's edge
    out = roi(image, mask, (32, 24))  # the box's own size: the crop itself
    expected = image[..., 12:44, 6:30].clone()
    expected[..., 20 - 12, 10 - 6] = 1.0
    assert out.shape == (1, 3, 32, 24)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # another size: the per-sample crop + interpolate of the white-filled image
    resized = roi(image, mask, (H, W))
    loop = F.interpolate(
        white_fill(image, mask)[..., 12:44, 6:30], (H, W), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(resized, loop, rtol=0, atol=1e-6)


def test_crop_resize_equals_the_per_sample_loop_and_passes_gradients():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, H, W, generator=g, requires_grad=True)
    boxes = torch.tensor([[0, 0, W - 1, H - 1], [5, 7, 30, 50], [20, 40, 22, 63]])
    for size in ((H, W), (17, 11), (100, 80)):
        out = crop_resize(images, boxes, size)
        for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            crop = images[i : i + 1, :, y0 : y1 + 1, x0 : x1 + 1]
            loop = F.interpolate(crop, size, mode="bilinear", align_corners=False)
            torch.testing.assert_close(out[i : i + 1], loop, rtol=0, atol=2e-6)
    out.sum().backward()
    assert images.grad is not None and images.grad[2, :, :40].abs().sum() == 0  # outside box 2


def test_roi_of_an_empty_mask_is_the_whole_image_with_a_warning():
    image = torch.rand(1, 3, H, W) * 2 - 1
    with pytest.warns(UserWarning, match="empty clothing mask"):
        out = roi(image, torch.zeros(1, 1, H, W), (H, W))
    torch.testing.assert_close(out, torch.ones_like(image))  # all white: nothing is the item


# --- construction --------------------------------------------------------------------------------


def test_perceptual_networks_are_never_silently_random(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"'vgg16'.*not found"):
        USTModule(**(TINY | {"perceptual_weights": "vgg16", "random_trunks": False}))
    with pytest.raises(ValueError, match="not both"):
        USTModule(**(TINY | {"perceptual_weights": "vgg16"}))
    with pytest.raises(ValueError, match="needs trunk_weights"):
        USTModule(**(TINY | {"random_trunks": False}))


def test_ablations_reach_the_networks():
    module = USTModule(**(TINY | {"mask_attention": False, "fit_in": False, "shared_style": False}))
    g = module.generator
    assert not g.shared_style and hasattr(g, "style_a") and hasattr(g, "style_b")
    assert not g.decoder_a.fit_in.paste
    assert module.discriminator_a.in_channels == 3 and module.discriminator_b.in_channels == 3
    full = USTModule(**TINY)
    assert full.discriminator_a.in_channels == 4 and full.generator.decoder_a.fit_in.paste


def test_optimizers_and_schedules(template, tmp_path):
    module = _module(template)
    module.hparams.lr_step = 1  # halve at every iteration
    trainer = _fit(module, tmp_path, batches=2)
    opt_g, opt_d = trainer.optimizers
    names_g = {id(p) for group in opt_g.param_groups for p in group["params"]}
    names_d = {id(p) for group in opt_d.param_groups for p in group["params"]}
    assert names_g == {id(p) for p in module.generator.parameters()}
    discriminators = [*module.discriminator_a.parameters(), *module.discriminator_b.parameters()]
    assert names_d == {id(p) for p in discriminators}
    for opt in (opt_g, opt_d):
        group = opt.param_groups[0]
        assert group["betas"] == (0.5, 0.999) and group["weight_decay"] == 1e-4
        assert group["lr"] == pytest.approx(1e-3 * 0.5**2)  # two iterations, two cuts
    assert trainer.global_step == 4  # Lightning counts optimizer steps: two per iteration


# --- the training step ---------------------------------------------------------------------------


class Snapshots(Callback):
    """Parameters before the batch, between the D and G updates, and after the batch."""

    def __init__(self, module: USTModule) -> None:
        self.states: dict[str, dict] = {}
        self.frozen_modes: list[bool] = []
        update = module._update_generator

        def between(*args, **kwargs):
            self.states["between"] = _params(module)
            return update(*args, **kwargs)

        module._update_generator = between

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.states["before"] = _params(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.states["after"] = _params(module)
        self.frozen_modes += [getattr(module, name).training for name in FROZEN]


def test_each_optimizer_changes_only_its_own_networks(template, tmp_path):
    module = _module(template)
    snapshots = Snapshots(module)
    _fit(module, tmp_path, callbacks=[snapshots])
    before, between, after = (snapshots.states[k] for k in ("before", "between", "after"))
    for d in ("discriminator_a.", "discriminator_b."):
        assert any(_changed(before, between, d)), f"the D step left {d} unchanged"
        assert not any(_changed(between, after, d)), f"the G step changed {d}"
    for part in GENERATOR_PARTS:
        assert not any(_changed(before, between, f"generator.{part}.")), f"D step moved {part}"
        assert any(_changed(between, after, f"generator.{part}.")), f"G step left {part}"
    for name in FROZEN:
        assert not any(_changed(before, after, f"{name}.")), f"{name} changed"
        assert not any(p.requires_grad for p in getattr(module, name).parameters())
    assert snapshots.frozen_modes == [False, False]  # eval mode while training


def test_discriminator_step_sees_detached_fakes(template, tmp_path):
    module = _module(template)
    calls: dict[str, list[tuple[bool, bool]]] = {"a": [], "b": []}
    for side in ("a", "b"):
        discriminator = getattr(module, f"discriminator_{side}")
        forward = discriminator.forward

        def recorded(images, mask=None, side=side, d=discriminator, forward=forward):
            trains = any(p.requires_grad for p in d.parameters())
            calls[side].append((trains, images.requires_grad))
            return forward(images, mask)

        discriminator.forward = recorded
    _fit(module, tmp_path)
    for side in ("a", "b"):
        # D step: the real, then the fake, both without a graph; G step: the fake with its graph
        assert calls[side] == [(True, False), (True, False), (False, True)], side


def test_each_term_reads_the_spec_inputs(template):
    """Eqs. 4.2-4.7 written out from the spec's stream definitions, against ``generator_terms``."""
    module = _module(template)
    rows = [_item(i) for i in range(2)]
    batch = {k: torch.stack([row[k] for row in rows]) for k in rows[0]}
    image_a, image_b, m, c = (batch[k] for k in ("image_a", "image_b", "mask_a", "context_a"))
    with torch.no_grad():
        terms = module.generator_terms(batch, module._translate(batch))
        g, lam_g = module.generator, module.hparams.lambda_gram
        z_a, z_b = g.encode_a(image_a, m), g.encode_b(image_b)
        i_aa, i_bb = g.decode_a(*z_a, m, c), g.decode_b(*z_b)
        i_ab, i_ba = g.decode_b(*z_a), g.decode_a(*z_b, m, c)
        z_ab = g.content_b(i_ab), g.style_code(i_ab, "b")
        z_ba = g.content_a(i_ba, m), g.style_code(white_fill(i_ba, m), "a")
        roi_a, roi_ba = roi(image_a, m, (H, W)), roi(i_ba, m, (H, W))
        lpips, gram = module.lpips, module.gram
        expected = {
            "lar_a": (z_ab[0] - z_a[0]).abs().mean() + (z_ab[1] - z_a[1]).abs().mean(),
            "lar_b": (z_ba[0] - z_b[0]).abs().mean() + (z_ba[1] - z_b[1]).abs().mean(),
            "ser_a": (i_aa - image_a).abs().mean(),
            "ser_b": (i_bb - image_b).abs().mean(),
            "cc_a": (g.decode_a(*z_ab, m, c) - image_a).abs().mean(),
            "cc_b": (g.decode_b(*z_ba) - image_b).abs().mean(),
            "gan_a": torch.stack(
                [0.5 * (s - 1).square().mean() for s in module.discriminator_a(i_ba, m)]
            ).mean(),
            "gan_b": torch.stack(
                [0.5 * (s - 1).square().mean() for s in module.discriminator_b(i_ab)]
            ).mean(),
            "p_a": lpips(i_aa, image_a).mean()
            + lpips(i_ab, roi_a).mean()
            + lam_g * gram.distance(i_ab, roi_a),
            "p_b": lpips(i_bb, image_b).mean()
            + lpips(roi_ba, image_b).mean()
            + lam_g * gram.distance(roi_ba, image_b),
            "sym": (i_ab - i_ab.flip(-1)).abs().sum(1).mean(),
        }
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, msg=name)


def _step_values(trainer) -> dict[str, float]:
    metrics = trainer.logged_metrics
    return {name: float(metrics[f"train/{name}_step"]) for name in TRAIN_LOGS}


def test_every_term_is_logged_finite_and_sums_to_the_total(tmp_path):
    weights = {
        "lambda_gan": 2.0,
        "lambda_cc": 3.0,
        "lambda_ser": 5.0,
        "lambda_lar": 7.0,
        "lambda_p": 11.0,
        "lambda_gram": 13.0,
        "lambda_sym": 0.5,
    }
    module = USTModule(**(TINY | weights))
    trainer = _fit(module, tmp_path)
    values = _step_values(trainer)
    assert all(math.isfinite(v) for v in values.values()), values
    assert all(v >= 0 for v in values.values()), values
    for name in TRAIN_LOGS:  # the exact epoch means of one batch are its values
        assert float(trainer.callback_metrics[f"train/{name}_epoch"]) == pytest.approx(values[name])
    for side in ("a", "b"):
        p = values[f"lpips_{side}"] + weights["lambda_gram"] * values[f"gram_{side}"]
        assert values[f"p_{side}"] == pytest.approx(p, rel=1e-6)
    total = weights["lambda_sym"] * values["sym"] + sum(
        weights[f"lambda_{name}"] * (values[f"{name}_a"] + values[f"{name}_b"])
        for name in ("gan", "cc", "ser", "lar", "p")
    )
    assert values["loss_g"] == pytest.approx(total, rel=1e-5)
    assert values["loss_d"] == pytest.approx(values["d_a"] + values["d_b"], rel=1e-6)
    assert set(G_TERMS) | set(G_PARTS) | {"loss_g", "d_a", "d_b", "loss_d"} == set(TRAIN_LOGS)


def test_no_perceptual_still_logs_the_terms_without_weighing_them(tmp_path):
    module = USTModule(**(TINY | {"lambda_p": 0.0}))
    values = _step_values(_fit(module, tmp_path))
    assert values["p_a"] > 0 and values["p_b"] > 0
    total = values["sym"] + sum(
        TINY.get(f"lambda_{n}", w) * (values[f"{n}_a"] + values[f"{n}_b"])
        for n, w in (("gan", 1.0), ("cc", 10.0), ("ser", 10.0), ("lar", 1.0))
    )
    assert values["loss_g"] == pytest.approx(total, rel=1e-5)


def test_an_alex_phi_and_no_gram_change_only_the_perceptual_terms(template):
    """``perceptual_net="alex"``: Phi is LPIPS-Alex, the metric network stays LPIPS-VGG;
    ``lambda_gram=0``: no Gram term is computed or logged, p = the LPIPS part."""
    rows = [_item(i) for i in range(2)]
    batch = {k: torch.stack([row[k] for row in rows]) for k in rows[0]}
    module = _module(template)
    torch.manual_seed(0)
    cheap = USTModule(**(TINY | {"perceptual_net": "alex", "lambda_gram": 0.0}))
    cheap.load_state_dict(module.state_dict(), strict=False)  # same generator, D, LPIPS-VGG
    assert cheap.lpips.net == "vgg" and cheap.loss_lpips.net == "alex"
    with torch.no_grad():
        ours = module.generator_terms(batch, module._translate(batch))
        theirs = cheap.generator_terms(batch, cheap._translate(batch))
        image_a, m = batch["image_a"], batch["mask_a"]
        i_aa = cheap.generator.decode_a(
            *cheap.generator.encode_a(image_a, m), m, batch["context_a"]
        )
        i_ab = cheap.generator.take_off(image_a, m)
        expected = (
            cheap.loss_lpips(i_aa, image_a).mean()
            + cheap.loss_lpips(i_ab, roi(image_a, m, (H, W))).mean()
        )
    assert "gram_a" not in theirs and "gram_b" not in theirs
    torch.testing.assert_close(theirs["p_a"], expected)
    assert theirs["lpips_a"] != ours["lpips_a"]
    for name in ("gan_a", "gan_b", "cc_a", "cc_b", "ser_a", "ser_b", "lar_a", "lar_b", "sym"):
        torch.testing.assert_close(theirs[name], ours[name], msg=name)
    with pytest.raises(ValueError, match="perceptual_net"):
        USTModule(**(TINY | {"perceptual_net": "squeeze"}))


# --- on the VITON twin ---------------------------------------------------------------------------


@pytest.fixture
def twin_root(viton_twin_root):
    return viton_twin_root


def _twin(root, **kwargs) -> VitonDataModule:
    settings = {"num_workers": 0, "synthetic": "tiny", "batch_size": 2, "eval_batch_size": 5}
    return VitonDataModule(root=str(root), **(settings | kwargs))


def test_fit_on_the_twin_logs_evaluation_and_round_trips(template, twin_root, tmp_path):
    module = _module(template)
    data = _twin(twin_root, eval_batch_size=4)
    trainer = cpu_trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule=data)
    # seven test pairs in uneven batches (4, 3): the logged means are over items, not batches
    loader = DataLoader(Subset(data.splits["test"], range(7)), batch_size=4)
    for stage, results in (
        ("val", trainer.callback_metrics),
        ("test", trainer.test(module, loader)[0]),
    ):
        for name in ("takeoff_ssim", "takeoff_lpips", "tryon_roi_ssim", "tryon_roi_lpips"):
            value = float(results[f"{stage}/{name}"])
            assert math.isfinite(value), (stage, name)
            assert -100 <= value <= 100 if name.endswith("ssim") else value >= 0
    module.eval()
    scores = []
    for batch in loader:
        with torch.no_grad():
            out = module.take_off(batch["image_a"], batch["mask_a"])
        scores.append(ssim((out + 1).div(2).clamp(0, 1), (batch["image_b"] + 1) / 2))
    expected = 100 * torch.cat(scores).mean()
    assert float(trainer.callback_metrics["test/takeoff_ssim"]) == pytest.approx(float(expected))
    # checkpoint round trip: same weights, same outputs
    path = tmp_path / "ust.ckpt"
    trainer.save_checkpoint(path)
    loaded = USTModule.load_from_checkpoint(path)
    assert loaded.hparams == module.hparams
    batch = next(iter(loader))
    with torch.no_grad():
        for model in (module, loaded):
            model.eval()
        torch.testing.assert_close(
            loaded.take_off(batch["image_a"], batch["mask_a"]),
            module.take_off(batch["image_a"], batch["mask_a"]),
        )
        args = (batch["image_b"], batch["mask_a"], batch["context_a"])
        torch.testing.assert_close(loaded.try_on(*args), module.try_on(*args))
        x, y = batch["image_a"], batch["image_b"]
        torch.testing.assert_close(loaded.lpips(x, y), module.lpips(x, y))


def test_without_fit_in_the_try_on_roi_is_not_reported(twin_root, tmp_path):
    module = USTModule(**(TINY | {"fit_in": False}))
    trainer = cpu_trainer(tmp_path, limit_test_batches=1)
    results = trainer.test(module, _twin(twin_root))[0]
    assert "test/takeoff_ssim" in results and "test/takeoff_lpips" in results
    assert not any(name.startswith("test/tryon") for name in results)


def test_the_twins_cross_pairs_are_scored_beside_the_matched_ones(template, twin_root, tmp_path):
    module = _module(template)
    trainer = cpu_trainer(tmp_path, limit_test_batches=1)
    results = trainer.test(module, _twin(twin_root, test_cross=True))
    logged = {name for result in results for name in result}
    expected = {f"test/{name}" for name in (*EVAL_LOGS, *CROSS_LOGS)}
    assert logged == expected  # no "/dataloader_idx_<k>" suffixes
    assert all(math.isfinite(float(trainer.callback_metrics[name])) for name in expected)


# --- under DDP -----------------------------------------------------------------------------------


@pytest.mark.slow  # two gloo processes
def test_under_ddp_both_players_train_and_every_rank_holds_the_same_weights(tmp_path):
    """ddp_ust_module.py: each rank's D and G steps reach only their networks (partial_backward
    averages exactly their gradients), and the ranks end with the same weights and rates."""
    from ddp_runs import run_script

    run_script("UST on 2 processes", ["tests/ddp_ust_module.py", tmp_path, 2])
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0]["lr"] == ranks[1]["lr"]
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys()
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    assert len(ranks[0]["loss_d"]) == 2  # 8 rows, batches of 2, two ranks
    assert ranks[0]["loss_d"] != ranks[1]["loss_d"]  # each rank its own rows


@pytest.mark.slow  # two gloo processes
def test_evaluation_under_ddp_logs_what_one_process_logs(tmp_path):
    """Nine matched pairs shared 5 / 4 by two ranks: the same take-off and try-on ROI means."""
    from test_ddp_logging import Shards, assert_same_as_one_process

    def model() -> USTModule:
        torch.manual_seed(0)
        return USTModule(**TINY)

    data = Shards([_item(i) for i in range(9)], image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    alone = assert_same_as_one_process(tmp_path, model, data, "test", rel=1e-5)
    assert {f"test/{name}" for name in EVAL_LOGS} <= set(alone)
