"""OLR stage 2 (``lightning_modules.olr.siamese.OLRSiamese``) and its teacher stage: the frozen
teacher, the pair loss on one batch, the held-out metrics, the embedding writer, checkpoints.
Learning on the synthetic faces (spec assertions 1-7, with controls) is ``test_olr_learning.py``.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from datamodules.formats.celeba import read_celeba
from datamodules.olr import OLRDataModule
from experiments.init_from import InitFrom, load_init_from
from lightning_modules.face_attributes.module import FaceAttributeClassifier
from lightning_modules.olr.collapse import pc1_ratio
from lightning_modules.olr.embedding_writer import WriteEmbeddings, load_embeddings
from lightning_modules.olr.losses import constant_target_loss
from lightning_modules.olr.pair_metrics import ConstantBaseline, EmbeddingMoments
from lightning_modules.olr.siamese import OLRSiamese

SIZE, HELD_OUT, K = 46, 30, 8
TEACHER_NET = {"channels": [8, 16, 32, 64], "stem_width": 8}
TEACHER = {"teacher_model_name": "resnet10t", "teacher_model_kwargs": TEACHER_NET}
ENCODER = {"embedding_dim": K, "widths": [8, 16, 32]}
QUIET = {
    "accelerator": "cpu",
    "devices": 1,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


@pytest.fixture(scope="module")
def root(synthetic_faces_root: Path) -> Path:
    return synthetic_faces_root / "celeba"


def data(root: Path, pairs: bool = True, **kwargs) -> OLRDataModule:
    total = len(read_celeba(root).names)
    kwargs = {"image_size": SIZE, "batch_size": 16, "num_workers": 0, **kwargs}
    return OLRDataModule(root=str(root), train_count=total - HELD_OUT, pairs=pairs, **kwargs)


def siamese(**kwargs) -> OLRSiamese:
    return OLRSiamese(**{**ENCODER, **TEACHER, "allow_untrained_teacher": True, **kwargs})


def trainer(tmp_path: Path | None = None, **kwargs) -> Trainer:
    """A quiet CPU trainer; files it writes go to ``tmp_path`` or a fresh temporary folder,
    never to the working directory."""
    logger = CSVLogger(str(tmp_path)) if tmp_path is not None else False
    folder = str(tmp_path) if tmp_path is not None else tempfile.mkdtemp(prefix="olr-test-")
    settings = {**QUIET, "default_root_dir": folder, **kwargs}
    return Trainer(logger=logger, enable_checkpointing=False, **settings)


def hand_loss(model: OLRSiamese, batch: dict) -> torch.Tensor:
    """L_S written out: teacher probabilities, their product, row dots, squared gaps."""
    with torch.no_grad():
        p_a = torch.sigmoid(model.teacher(batch["image_a"]))
        p_b = torch.sigmoid(model.teacher(batch["image_b"]))
    e_a, e_b = model.encoder(batch["image_a"]), model.encoder(batch["image_b"])
    u = torch.einsum("blk,blk->bl", e_a, e_b)
    return ((u - p_a * p_b) ** 2).mean()


# --- teacher stage --------------------------------------------------------------------------------


def test_face_attribute_classifier_trains_on_olr_images(root):
    """Stage 1: the suite's classifier with 38 labels on OLRDataModule(pairs=False)."""
    model = FaceAttributeClassifier(
        model_name="resnet10t", model_kwargs=TEACHER_NET, num_attributes=38
    )
    fit = trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    fit.fit(model, datamodule=data(root, pairs=False))
    assert model.names()[0] == "5_o_Clock_Shadow" and len(model.names()) == 38
    assert torch.isfinite(fit.callback_metrics["val/loss"])


# --- the frozen teacher ---------------------------------------------------------------------------


def test_refuses_to_fit_an_untrained_teacher(root):
    model = siamese(allow_untrained_teacher=False)
    with pytest.raises(ValueError, match="allow_untrained_teacher=true"):
        trainer(max_epochs=1, limit_train_batches=1).fit(model, datamodule=data(root))


def test_init_from_loads_the_classifier_network_into_the_teacher(tmp_path):
    classifier = FaceAttributeClassifier(
        model_name="resnet10t", model_kwargs=TEACHER_NET, num_attributes=38
    )
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": classifier.state_dict()}, path)
    model = siamese(allow_untrained_teacher=False)
    assert not model.teacher_loaded
    load_init_from(model, [InitFrom(str(path), source="model", target="teacher")])
    assert model.teacher_loaded
    for name, value in classifier.model.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[name], value), name


def test_teacher_frozen_and_in_eval_mode_through_fit(root):
    model = siamese()
    before = copy.deepcopy(model.teacher.state_dict())
    encoder_before = copy.deepcopy(model.encoder.state_dict())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    modes = []

    model.teacher.register_forward_pre_hook(lambda module, args: modes.append(
        (module.training, model.encoder.training, torch.is_grad_enabled())
    ))  # fmt: skip
    fit = trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    fit.fit(model, datamodule=data(root))
    train_calls = [m for m in modes if m[1]]
    assert train_calls and all(not teacher and not grad for teacher, _, grad in modes)
    assert not model.teacher.training
    for name, value in model.teacher.state_dict().items():  # weights and BN statistics
        assert torch.equal(value, before[name]), name
    assert any(not torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    names = {id(p) for group in fit.optimizers[0].param_groups for p in group["params"]}
    assert names == {id(p) for p in model.encoder.parameters()}


@pytest.mark.parametrize("cosine", [False, True])
def test_cosine_decay_brings_the_rate_to_zero_at_the_last_step(root, cosine):
    model = siamese(lr=1e-3, cosine_decay=cosine)
    fit = trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    fit.fit(model, datamodule=data(root))
    rate = fit.optimizers[0].param_groups[0]["lr"]
    assert rate == (pytest.approx(0.0, abs=1e-12) if cosine else 1e-3)


# --- the loss on one batch ------------------------------------------------------------------------


def test_same_occluded_tensors_feed_teacher_and_encoder(root):
    model = siamese().eval()
    dm = data(root)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    seen = {"teacher": [], "encoder": []}
    model.teacher.register_forward_pre_hook(lambda m, args: seen["teacher"].append(args[0]))
    model.encoder.register_forward_pre_hook(lambda m, args: seen["encoder"].append(args[0]))
    model.pair_step(batch)
    assert seen["teacher"][0] is batch["image_a"] and seen["teacher"][1] is batch["image_b"]
    assert seen["encoder"][0] is batch["image_a"] and seen["encoder"][1] is batch["image_b"]
    assert (batch["image_a"] == 0).any()  # occluded


def test_training_loss_equals_hand_computation(root):
    torch.manual_seed(0)
    model = siamese(embed_act="linear")
    dm = data(root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    loss = model.pair_step(batch)[0].mean()  # train mode: BN on each image batch, as below
    expected = hand_loss(model, batch)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() > 0


def test_all_pairs_loss_covers_every_pair_of_distinct_images(root):
    """train_pairs="all": the mean of the pair loss over the (2B choose 2) pairs of the batch's
    images, in a double loop by hand; the drawn pairs are among them."""
    torch.manual_seed(0)
    model = siamese(embed_act="linear", train_pairs="all").eval()
    dm = data(root)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    losses = model.all_pairs_losses(batch)
    images = torch.cat([batch["image_a"], batch["image_b"]])
    with torch.no_grad():
        e, p = model(images), torch.sigmoid(model.teacher(images))
    n = len(images)
    by_hand = {
        (i, j): ((e[i] * e[j]).sum(-1) - p[i] * p[j]).square().mean().item()
        for i in range(n)
        for j in range(i + 1, n)
    }
    assert losses.shape == (n * (n - 1) // 2,)
    assert sorted(losses.tolist()) == pytest.approx(sorted(by_hand.values()), rel=1e-5)
    drawn = model.pair_step(batch)[0]
    b = n // 2
    for i, loss in enumerate(drawn.tolist()):
        assert loss == pytest.approx(by_hand[(i, b + i)], rel=1e-5)
    with pytest.raises(ValueError, match="train_pairs must be"):
        siamese(train_pairs="some")


def test_self_pairs_add_a_second_view_of_each_first_image(root):
    """self_pairs: training batches carry image_a2, image a under another occlusion; the loss is
    (1 - w) x the mean over the other pairs + w x the mean over the B self pairs (a_i, a2_i),
    w = self_pair_weight, with drawn pairs and with every pair of the 3B images."""
    torch.manual_seed(0)
    dm = data(root, self_pairs=True)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    b = len(batch["image_a"])
    assert batch["image_a2"].shape == batch["image_a"].shape
    assert not torch.equal(batch["image_a2"], batch["image_a"])
    model = siamese(embed_act="linear", self_pair_weight=0.8).eval()
    with torch.no_grad():
        loss = model.training_step(batch, 0)
        drawn = model.pair_step(batch)[0]
        images = torch.cat([batch["image_a"], batch["image_b"], batch["image_a2"]])
        e, p = model(images), torch.sigmoid(model.teacher(images))
    pair = {
        (i, j): ((e[i] * e[j]).sum(-1) - p[i] * p[j]).square().mean().item()
        for i in range(3 * b)
        for j in range(i + 1, 3 * b)
    }
    selves = torch.tensor([pair[(i, 2 * b + i)] for i in range(b)])
    assert drawn.tolist() == pytest.approx([pair[(i, b + i)] for i in range(b)], rel=1e-5)
    assert loss.item() == pytest.approx((0.2 * drawn.mean() + 0.8 * selves.mean()).item(), rel=1e-5)
    weights = model.state_dict()
    model = siamese(embed_act="linear", train_pairs="all", self_pair_weight=0.8).eval()
    model.load_state_dict(weights)
    with torch.no_grad():
        losses, loss = model.all_pairs_losses(batch), model.training_step(batch, 0)
    assert sorted(losses.tolist()) == pytest.approx(sorted(pair.values()), rel=1e-5)
    others = torch.tensor([v for (i, j), v in pair.items() if j != 2 * b + i])
    assert loss.item() == pytest.approx(
        (0.2 * others.mean() + 0.8 * selves.mean()).item(), rel=1e-5
    )
    without = {k: v for k, v in batch.items() if k not in ("image_a2", "box_a2")}
    with torch.no_grad():
        plain = model.training_step(without, 0)  # no self pairs: the 2B images' pairs, averaged
    among_2b = torch.tensor([v for (i, j), v in pair.items() if j < 2 * b])
    assert plain.item() == pytest.approx(among_2b.mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="self_pair_weight must be in"):
        siamese(self_pair_weight=1.5)
    with pytest.raises(ValueError, match="self_pairs is for occluded-pair training"):
        data(root, pairs=False, self_pairs=True)


def test_temperature_targets_soften_the_teacher(root):
    model = siamese(targets="temperature", temperature=3.0).eval()
    dm = data(root)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    _, target, _, _ = model.pair_step(batch)
    z_a, z_b = model.teacher(batch["image_a"]), model.teacher(batch["image_b"])
    assert torch.allclose(target, torch.sigmoid(z_a / 3) * torch.sigmoid(z_b / 3))
    with pytest.raises(ValueError, match="targets must be"):
        siamese(targets="softmax")


# --- held-out metrics -----------------------------------------------------------------------------


def test_pair_metrics_equal_whole_set_values():
    torch.manual_seed(0)
    targets = torch.rand(50, 4)
    embeddings = torch.randn(50, 4, 3) * torch.tensor([3.0, 1.0, 0.2])
    baseline, moments = ConstantBaseline(4), EmbeddingMoments(4, 3)
    for chunk_t, chunk_e in zip(targets.split(7), embeddings.split(7), strict=True):
        baseline.update(chunk_t)
        moments.update(chunk_e)
    assert baseline.compute().item() == pytest.approx(constant_target_loss(targets).item())
    assert torch.allclose(moments.compute()[:, 0], pc1_ratio(embeddings), atol=1e-9)


def test_validation_logs_exact_held_out_loss_baseline_and_pc1(root):
    torch.manual_seed(0)
    model = siamese().eval()
    dm = data(root, batch_size=7)  # 30 held-out pairs: uneven batches
    fit = trainer()
    metrics = fit.validate(model, datamodule=dm, verbose=False)[0]
    losses, targets, embeddings = [], [], []
    for batch in dm.val_dataloader():
        loss, target, e_a, e_b = model.pair_step(batch)
        losses.append(loss)
        targets.append(target)
        embeddings += [e_a, e_b]
    loss, baseline = (
        torch.cat(losses).mean().item(),
        constant_target_loss(torch.cat(targets)).item(),
    )
    assert metrics["val/loss"] == pytest.approx(loss, rel=1e-6)
    assert metrics["val/baseline_loss"] == pytest.approx(baseline, rel=1e-6)
    assert metrics["val/loss_ratio"] == pytest.approx(loss / baseline, rel=1e-6)
    pc1 = pc1_ratio(torch.cat(embeddings).detach())
    assert metrics["val/pc1_ratio_max"] == pytest.approx(pc1.max().item(), rel=1e-6)
    assert metrics["val/pc1_ratio_mean"] == pytest.approx(pc1.mean().item(), rel=1e-6)


def test_collapse_warning_names_the_labels(root):
    model = siamese().eval()
    with torch.no_grad():  # every embedding the same point: no variance, fully collapsed
        model.encoder.label_layer.weight.zero_()
    with pytest.warns(UserWarning, match="OLR embedding collapse.*Eyeglasses"):
        trainer().validate(model, datamodule=data(root), verbose=False)


# --- prediction, writer, checkpoint ---------------------------------------------------------------


def test_writer_saves_embeddings_per_split_in_dataset_order(root, tmp_path):
    torch.manual_seed(0)
    model = siamese().eval()
    dm = data(root, batch_size=8)
    fit = trainer(tmp_path, callbacks=[WriteEmbeddings(output_dir=str(tmp_path / "out"))])
    fit.predict(model, datamodule=dm, return_predictions=False)
    for split in ("train", "test"):
        saved = load_embeddings(tmp_path / "out" / f"embeddings_{split}.pt")
        images = dm.splits[f"images_{split}"]
        n = len(images)
        assert (
            saved["embeddings"].shape == (n, 38, K) and saved["embeddings"].dtype == torch.float32
        )
        assert saved["image_id"] == [images[i]["image_id"] for i in range(n)]
        assert saved["attributes"].shape == (n, 38) and len(saved["label_names"]) == 38
        for i in (0, n - 1):
            item = images[i]
            with torch.no_grad():
                expected = model(item["image"][None])[0]
            assert torch.allclose(saved["embeddings"][i], expected, atol=1e-5)
            assert torch.equal(saved["attributes"][i], item["attributes"].float())


def test_checkpoint_round_trip(root, tmp_path):
    torch.manual_seed(0)
    model = siamese()
    fit = Trainer(
        **QUIET, max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
        default_root_dir=str(tmp_path),
    )  # fmt: skip
    fit.fit(model, datamodule=data(root))
    path = tmp_path / "siamese.ckpt"
    fit.save_checkpoint(path)
    loaded = OLRSiamese.load_from_checkpoint(path)
    assert loaded.teacher_loaded and loaded.hparams == model.hparams
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    images = torch.rand(2, 3, SIZE, SIZE)
    assert torch.equal(loaded.eval()(images), model.eval()(images))


@pytest.mark.slow  # two processes each import torch and Lightning and start gloo
def test_metrics_and_embeddings_under_two_process_ddp(root, tmp_path):
    """Held-out loss, baseline, ratio and PC1 summaries, and the written embeddings, are those of
    one process when 2 ranks hold 16 and 15 of the 31 held-out pairs."""
    import json

    from ddp_olr_siamese import DATA, MODEL
    from ddp_runs import run_script

    torch.manual_seed(0)
    total = len(read_celeba(root).names)
    model = OLRSiamese(**MODEL).eval()
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "ddp"
    out.mkdir()
    run_script("ddp_olr_siamese", ["tests/ddp_olr_siamese.py", root, total - 31, weights, out])
    ddp = json.loads((out / "metrics.json").read_text())
    dm = OLRDataModule(root=str(root), train_count=total - 31, **DATA)
    single = tmp_path / "single"
    one = trainer(callbacks=[WriteEmbeddings(output_dir=str(single))])
    expected = one.validate(model, datamodule=dm, verbose=False)[0]
    assert sorted(ddp) == sorted(expected)
    for key, value in expected.items():
        assert ddp[key] == pytest.approx(value, rel=1e-6), key
    one.predict(model, datamodule=dm, return_predictions=False)
    for split in ("train", "test"):
        a = load_embeddings(out / f"embeddings_{split}.pt")
        b = load_embeddings(single / f"embeddings_{split}.pt")
        assert a["image_id"] == b["image_id"] and a["label_names"] == b["label_names"]
        assert torch.allclose(a["embeddings"], b["embeddings"], atol=1e-5)
        assert torch.equal(a["attributes"], b["attributes"])
