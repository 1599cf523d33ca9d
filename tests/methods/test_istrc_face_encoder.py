"""ISTRC's face encoder E and its FaceNet stand-in: unit-norm outputs and FACENET's input scaling,
the semi-hard triplet loss against a brute-force numpy version and on hand-made cases, the
verification scores (Euclidean and spherical AUC equal, as sklearn computes them), a tiny fit on
the synthetic faces twin, loading and freezing the encoder, and the data checks.

The slow test trains the stand-in at the spec's test scale (32 px, a tiny CNN, dim 32) on the
``small`` twin and checks spec assertion 1 on its held-out identities.
"""

from __future__ import annotations

import doctest
import itertools
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning import LightningModule, seed_everything
from quiet_trainer import cpu_trainer
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

import lightning_modules.istrc.face_encoder as face_encoder_module
from datamodules.celeba import CelebADataModule
from datamodules.verification_pairs import verification_pairs
from lightning_modules.components.frozen import FrozenSubmodules
from lightning_modules.components.pretrained import WeightsNotFoundError
from lightning_modules.istrc.face_encoder import FaceNetEncoder, frozen_face_encoder, standardise
from lightning_modules.istrc.facenet_module import FaceNetTriplet, verification_scores
from lightning_modules.istrc.triplet_loss import (
    batch_triplet_loss,
    semi_hard_triplets,
    squared_distances,
)

REPO = Path(__file__).resolve().parents[2]
#: The spec's test scale: the 32 px crop fed directly to a tiny CNN with 32-d outputs.
TINY = {
    "backbone": "latentlab/vgg",
    "dim": 32,
    "input_size": 32,
    "model_kwargs": {"widths": [16, 32, 64]},
}


def _encoder(**kwargs) -> FaceNetEncoder:
    torch.manual_seed(0)
    return FaceNetEncoder(**(TINY | kwargs))


def _images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _faces(root: Path, **kwargs) -> CelebADataModule:
    """The twin's official (identity-disjoint) splits at 32 px in [-1, 1], P x K batches."""
    args = {
        "root": str(root),
        "image_size": 32,
        "split": "official",
        "crop": "face128",
        "normalize": "signed",
        "batch_size": 64,
        "identities_per_batch": 8,
        "images_per_identity": 4,
        "num_workers": 0,
    }
    return CelebADataModule(**(args | kwargs))


# --- the encoder ---------------------------------------------------------------------------------


def test_docstring_examples():
    assert doctest.testmod(face_encoder_module, extraglobs={"torch": torch}).failed == 0


@pytest.mark.parametrize("size", [32, 64, 20])
def test_outputs_are_unit_vectors(size):
    """Spec assertion 1: |‖z‖ - 1| < 1e-5, whatever the image size or scale fed in."""
    encoder = _encoder()
    for images in (_images(6, size), 50 * _images(6, size, seed=1), torch.zeros(2, 3, size, size)):
        z = encoder(images)
        assert z.shape == (len(images), 32) and z.dtype == torch.float32
        assert ((z.norm(dim=1) - 1).abs() < 1e-5).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = encoder(_images(4, size))
    assert z.dtype == torch.float32 and ((z.norm(dim=1) - 1).abs() < 1e-5).all()


def test_facenet_standardisation_of_signed_images():
    """(x_uint8 - 127.5) / 128 of the uint8 crop, fed as x_uint8 / 127.5 - 1; resized to 160."""
    pixels = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    signed = pixels.float() / 127.5 - 1
    same_size = standardise(signed, 64)
    torch.testing.assert_close(same_size, (pixels.float() - 127.5) / 128)
    upsampled = standardise(signed, 160)
    assert upsampled.shape == (2, 3, 160, 160)
    expected = F.interpolate((pixels.float() - 127.5) / 128, size=160, mode="bilinear")
    torch.testing.assert_close(upsampled, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        standardise(torch.zeros(2, 1, 8, 8), 8)


def test_every_parameter_gets_a_gradient():
    encoder = _encoder()
    encoder(_images(4)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_the_real_scale_encoder_takes_the_64_px_crop_to_160_px():
    encoder = FaceNetEncoder("inception_resnet_v2", dim=512).eval()
    assert encoder.projection.out_features == 512 and encoder.input_size == 160
    with torch.no_grad():
        z = encoder(_images(1, 64))
    assert z.shape == (1, 512) and abs(float(z.norm()) - 1) < 1e-5


# --- the triplet loss ----------------------------------------------------------------------------


def _numpy_reference(embeddings: np.ndarray, identity: np.ndarray, margin: float):
    """Brute force: every ordered anchor-positive pair, the negative by the documented rule."""
    triplets, hinges = [], []
    for a, p in itertools.product(range(len(identity)), repeat=2):
        if a == p or identity[a] != identity[p]:
            continue
        d_ap = float(((embeddings[a] - embeddings[p]) ** 2).sum())
        negatives = [n for n in range(len(identity)) if identity[n] != identity[a]]
        d_an = {n: float(((embeddings[a] - embeddings[n]) ** 2).sum()) for n in negatives}
        semi_hard = [n for n in negatives if d_ap < d_an[n] < d_ap + margin]
        farther = [n for n in negatives if d_an[n] > d_ap]
        pool = semi_hard or farther or negatives
        n = min(pool, key=lambda k: d_an[k])
        triplets.append((a, p, n))
        hinges.append(max(d_ap - d_an[n] + margin, 0.0))
    return triplets, float(np.mean(hinges))


@pytest.mark.parametrize("seed", range(4))
def test_triplet_loss_matches_a_numpy_brute_force(seed):
    rng = np.random.default_rng(seed)
    identity = np.repeat(rng.permutation(10)[:6], 4)  # 6 identities x 4 images
    embeddings = rng.normal(size=(24, 5))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    if seed % 2:  # pull each identity together a bit: easy, semi-hard and hard triplets mix
        centres = rng.normal(size=(10, 5))
        embeddings = embeddings + 0.8 * centres[identity]
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    expected_triplets, expected_loss = _numpy_reference(embeddings, identity, 0.2)
    z, labels = torch.from_numpy(embeddings), torch.from_numpy(identity)
    mined = batch_triplet_loss(z, labels, margin=0.2)
    got = list(zip(*(t.tolist() for t in semi_hard_triplets(z, labels)), strict=True))
    assert got == expected_triplets
    assert mined.triplets == 6 * 4 * 3
    assert float(mined.loss) == pytest.approx(expected_loss, abs=1e-12)


def _line(*positions: float) -> torch.Tensor:
    return torch.tensor(positions, dtype=torch.float64)[:, None]


def test_semi_hard_selection_hand_made():
    # anchor 0 at 0.0, positive 1 at 0.3: d_ap = 0.09. Negatives 2..5 at 0.2 (d = 0.04, hard),
    # 0.4 (0.16) and 0.5 (0.25) semi-hard (0.09 < d < 0.29), 0.7 (0.49, easy): the closest
    # semi-hard one is 3. Anchor 1 (positive 0, d_ap = 0.09): 2, 3 at d = 0.01 and 4 at 0.04 are
    # hard, 5 at 0.16 is the only semi-hard one.
    embeddings, identity = _line(0.0, 0.3, 0.2, 0.4, 0.5, 0.7), torch.tensor([0, 0, 1, 2, 3, 4])
    triplets = semi_hard_triplets(embeddings, identity)
    assert [t.tolist() for t in triplets] == [[0, 1], [1, 0], [3, 5]]
    mined = batch_triplet_loss(embeddings, identity)
    assert float(mined.loss) == pytest.approx(0.09 - 0.16 + 0.2, abs=1e-12)  # both alike
    assert (float(mined.active), float(mined.semi_hard), float(mined.hard)) == (1.0, 1.0, 0.0)


def test_fallbacks_without_a_semi_hard_negative():
    # anchor 0 (positive 1 at 1.0, d_ap = 1): negatives 2 (d = 0.25) and 3 (0.36) are both
    # closer: the hardest, 2. Anchor 1 (d_ap = 1): 3 at d = 2.56 is farther but beyond the
    # margin (easy, hinge 0) and 2 (d = 0.25) is hard: the closest farther one, 3.
    embeddings, identity = _line(0.0, 1.0, 0.5, -0.6), torch.tensor([7, 7, 1, 2])
    assert semi_hard_triplets(embeddings, identity).negative.tolist() == [2, 3]
    mined = batch_triplet_loss(embeddings, identity)
    assert float(mined.loss) == pytest.approx((1 - 0.25 + 0.2 + 0.0) / 2, abs=1e-12)
    assert (float(mined.active), float(mined.semi_hard), float(mined.hard)) == (0.5, 0.0, 0.5)


def test_no_anchor_positive_pair_gives_no_triplet_and_a_zero_loss():
    z = _encoder()(_images(4))
    mined = batch_triplet_loss(z, torch.tensor([0, 1, 2, 3]))
    assert mined.triplets == 0 and float(mined.loss.detach()) == 0.0
    mined.loss.backward()  # still attached to the graph
    assert batch_triplet_loss(z.detach(), torch.tensor([5, 5, 5, 5])).triplets == 0
    with pytest.raises(ValueError, match="integer"):
        semi_hard_triplets(z, torch.zeros(4))


# --- verification --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_euclidean_and_spherical_auc_agree_and_match_sklearn(seed):
    """Spec assertion 1: equal AUC within 1e-9 for unit vectors; both as sklearn's."""
    generator = torch.Generator().manual_seed(seed)
    identities = torch.randint(0, 40, (400,), generator=generator)
    centres = torch.randn(40, 16, generator=generator)
    z = F.normalize(centres[identities] + 1.5 * torch.randn(400, 16, generator=generator), dim=1)
    scores = verification_scores(z, identities, same=500, different=500, seed=seed)
    assert abs(scores["auc_euclidean"] - scores["auc_spherical"]) < 1e-9
    assert scores["accuracy_euclidean"] == scores["accuracy_spherical"]
    assert scores["pairs"] == 1000
    pairs = verification_pairs(identities, 500, 500, seed=seed)
    z64 = z.double().numpy()
    first, second = z64[pairs.index[:, 0]], z64[pairs.index[:, 1]]
    euclidean = np.linalg.norm(first - second, axis=1)
    spherical = np.arccos(np.clip((first * second).sum(1), -1, 1))
    assert scores["auc_euclidean"] == pytest.approx(roc_auc_score(pairs.same, -euclidean), abs=1e-9)
    assert scores["auc_spherical"] == pytest.approx(roc_auc_score(pairs.same, -spherical), abs=1e-9)
    assert 0.6 < scores["auc_euclidean"] < 1.0  # neither chance nor separable


def test_verification_caps_the_pairs_at_what_the_split_holds():
    identities = torch.tensor([0, 0, 1, 1, 2, 2])  # 3 same pairs, 12 different ones
    z = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    with pytest.warns(UserWarning, match="using 3 \\+ 12"):
        scores = verification_scores(z, identities, same=50, different=50, folds=3)
    assert scores["pairs"] == 15
    with pytest.warns(UserWarning, match="skipped"):
        assert verification_scores(z, torch.arange(6), folds=3) == {}


# --- the stand-in on the synthetic faces twin ----------------------------------------------------


@torch.no_grad()
def _fixed_batch_loss(module: FaceNetTriplet, batch: dict) -> float:
    """The loss of one batch as a training step sees it (batch statistics in BatchNorm), on a
    copy: a few steps in, the running statistics still lag the fast-moving features, and in
    eval mode every embedding sits close to every other (ranked well, but all hinges near alpha)."""
    copy = deepcopy(module).train()
    return float(batch_triplet_loss(copy(batch["image"]), batch["identity"]).loss)


def test_a_tiny_fit_lowers_the_triplet_loss_and_reports_verification(
    synthetic_faces_root, tmp_path
):
    seed_everything(0)
    data = _faces(synthetic_faces_root / "celeba")
    module = FaceNetTriplet(**TINY, pairs_same=100, pairs_different=100)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (32, 3, 32, 32) and batch["image"].min() >= -1
    before = _fixed_batch_loss(module, batch)
    trainer = cpu_trainer(tmp_path, max_epochs=3, enable_checkpointing=True)
    trainer.fit(module, data)
    after = _fixed_batch_loss(module, batch)
    assert after < 0.5 * before, (before, after)
    logged = trainer.callback_metrics
    assert float(logged["train/loss_epoch"]) < before
    for name in ("auc_euclidean", "auc_spherical", "accuracy_euclidean", "accuracy_spherical"):
        assert 0.5 < float(logged[f"val/{name}"]) <= 1.0
    assert float(logged["val/auc_euclidean"]) == float(logged["val/auc_spherical"])
    assert float(logged["val/pairs"]) == 200

    # the checkpoint: the module round trip, and the encoder alone from it, frozen
    path = tmp_path / "facenet.ckpt"
    trainer.save_checkpoint(path)
    images = batch["image"][:8]
    module.eval()
    expected = module(images)
    restored = FaceNetTriplet.load_from_checkpoint(path).eval()
    torch.testing.assert_close(restored(images), expected, rtol=0, atol=0)
    encoder = frozen_face_encoder(str(path), **TINY)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    torch.testing.assert_close(encoder(images), expected, rtol=0, atol=0)


def test_the_data_must_be_signed_and_grouped_by_identity(synthetic_faces_root, tmp_path):
    root = synthetic_faces_root / "celeba"
    module = FaceNetTriplet(**TINY)
    with pytest.raises(ValueError, match="identities_per_batch=32"):
        cpu_trainer(tmp_path, max_steps=1).fit(module, _faces(root, identities_per_batch=None))
    with pytest.raises(ValueError, match="image_mean"):
        cpu_trainer(tmp_path, max_steps=1).fit(module, _faces(root, normalize="none"))


def test_a_batch_without_triplets_is_refused():
    module = FaceNetTriplet(**TINY)
    batch = {"image": _images(4), "identity": torch.arange(4)}
    with pytest.raises(ValueError, match="gave no triplet"):
        module.training_step(batch, 0)


# --- loading and freezing ------------------------------------------------------------------------


def test_weights_file_round_trip_and_mismatch(tmp_path):
    encoder = _encoder()
    path = tmp_path / "encoder.pt"
    torch.save(encoder.state_dict(), path)
    loaded = FaceNetEncoder(**TINY, weights_file=str(path)).eval()
    images = _images(3)
    torch.testing.assert_close(loaded(images), encoder.eval()(images), rtol=0, atol=0)
    with pytest.raises(ValueError, match="mis-shaped"):
        FaceNetEncoder(**(TINY | {"dim": 16}), weights_file=str(path))


def test_a_missing_weights_file_is_an_error_naming_it_and_how_to_get_it(tmp_path, monkeypatch):
    missing = tmp_path / "facenet_standin.ckpt"
    with pytest.raises(WeightsNotFoundError) as error:
        FaceNetEncoder(**TINY, weights_file=str(missing))
    assert str(missing) in str(error.value) and "train the stand-in" in str(error.value)
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(WeightsNotFoundError) as error:
        FaceNetEncoder(**(TINY | {"dim": 512}), weights_file="facenet_vggface2")
    message = str(error.value)
    assert "20180402-114759-vggface2.pt" in message
    assert "make weights DOWNLOAD=1 NAMES=facenet_vggface2" in message


class _Later(FrozenSubmodules, LightningModule):
    """A later ISTRC stage holding E."""

    frozen = ("encoder",)

    def __init__(self, weights_file: str) -> None:
        super().__init__()
        self.encoder = frozen_face_encoder(weights_file, **TINY)


def test_a_later_stage_keeps_the_encoder_frozen(tmp_path):
    path = tmp_path / "encoder.pt"
    torch.save(_encoder().state_dict(), path)
    later = _Later(str(path))
    later.train()
    assert not later.encoder.training
    assert all(not m.training for m in later.encoder.modules())
    assert not any(p.requires_grad for p in later.encoder.parameters())


# --- learning at the spec's test scale (slow) ----------------------------------------------------

SMALL_TWIN = REPO / "data" / "synthetic_faces_small"
SLOW_EPOCHS = 5  # the spec's 20 (DEFAULT) is for real runs; 5 pass the bound with room


@pytest.mark.slow
def test_the_stand_in_learns_to_verify_held_out_identities():
    """Spec assertion 1 at the test scale on the ``small`` twin (240 / 30 / 30 identities):
    trained, verification accuracy on the test identities >= 0.85 (3,000 + 3,000 pairs, 10-fold
    threshold); the same encoder untrained stays below it. On one core of this 2-core machine:
    50 to 90 s for 5 epochs of 32 x 4 batches and the two tests (the twin written once beside
    the repository). Measured numbers: docs/results/istrc.md."""
    from datamodules.synthetic.faces import ensure_twin

    root = SMALL_TWIN / "celeba"
    ensure_twin(root, "celeba", "small", 0, (root / "list_attr_celeba.txt").is_file())
    seed_everything(0)
    data = _faces(root, identities_per_batch=32, images_per_identity=4, batch_size=256)
    module = FaceNetTriplet(**TINY)
    start = time.perf_counter()
    untrained = cpu_trainer(None).test(module, data, verbose=False)[0]
    trainer = cpu_trainer(None, max_epochs=SLOW_EPOCHS)
    trainer.fit(module, data)
    trained = trainer.test(module, data, verbose=False)[0]
    seconds = time.perf_counter() - start
    print(f"untrained {untrained}\ntrained {trained}\n{seconds:.0f} s")
    assert trained["test/pairs"] == untrained["test/pairs"] == 6000
    assert untrained["test/accuracy_euclidean"] < 0.85 <= trained["test/accuracy_euclidean"]
    for scores in (untrained, trained):
        assert abs(scores["test/auc_euclidean"] - scores["test/auc_spherical"]) < 1e-9
    with torch.no_grad():
        z = module.eval()(next(iter(data.test_dataloader()))["image"])
    assert ((z.norm(dim=1) - 1).abs() < 1e-5).all()
    # eval mode (as every later stage runs E) spreads the faces over the sphere: no collapse
    # of the running statistics (2 for uniform directions)
    assert float(squared_distances(z).mean()) > 1.0


@pytest.mark.slow  # three gloo processes in two launches
def test_under_ddp_verification_is_the_one_process_value_and_ranks_agree(
    synthetic_faces_root, tmp_path
):
    """ddp_istrc_facenet.py: the val split's embeddings gathered from two ranks give the
    one-process AUCs and accuracies exactly; each rank mines in its own identities; weights,
    epoch loss and the later validation agree on both ranks."""
    import json

    from ddp_runs import run_script

    root = synthetic_faces_root / "celeba"
    results = {}
    for devices in (1, 2):
        out = tmp_path / str(devices)
        out.mkdir()
        run_script(
            f"FaceNetTriplet on {devices}", ["tests/ddp_istrc_facenet.py", out, devices, root]
        )
        results[devices] = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    one, (rank0, rank1) = results[1][0], results[2]
    assert rank0["untrained"] == rank1["untrained"] == one["untrained"]
    assert one["untrained"]["val/pairs"] == 200
    assert rank0["state"] == rank1["state"]
    assert rank0["trained"] == rank1["trained"] and rank0["loss_epoch"] == rank1["loss_epoch"]
    assert len(rank0["steps"]) == len(rank1["steps"]) == 2
    for step0, step1 in zip(rank0["steps"], rank1["steps"], strict=True):
        assert not set(step0["identity"]) & set(step1["identity"])  # each rank its own P
        assert step0["loss"] != step1["loss"]
    mean_of_steps = np.mean([s["loss"] for r in (rank0, rank1) for s in r["steps"]])
    assert rank0["loss_epoch"] == pytest.approx(mean_of_steps, rel=1e-6)  # equal triplet counts
