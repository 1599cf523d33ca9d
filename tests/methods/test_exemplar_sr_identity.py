"""Phi_ID's substitute (spec ``hallucination`` sections 3 and 4): the penultimate features of a
FaceAttributeClassifier checkpoint, rebuilt with the input its DataModule gave it, frozen, and
their MSE added to L_p and L_p^s; a missing or unusable checkpoint is an error naming the file and
the command that writes one.

The classifier is a tiny ResNet trained for one batch on the synthetic faces twin's CelebA layout
(the face128 crop at 32 px), saved as a Lightning checkpoint.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exemplar_sr_tiny import MODULE as TINY
from quiet_trainer import cpu_trainer
from torch.utils.data import DataLoader, Dataset

from datamodules.images import NORMALIZATIONS
from lightning_modules.exemplar_sr import ExemplarSRModule
from lightning_modules.exemplar_sr.identity_features import (
    PRODUCE_COMMAND,
    IdentityWeightsError,
    load_identity_features,
)

SIDE = 32  # the classifier's input side
NET = {"channels": [8, 16, 32, 64], "stem_width": 8}


def _classifier_checkpoint(root, out, crop: str = "face128"):
    """A one-batch FaceAttributeClassifier run on the twin, saved to ``out``: (path, classifier)."""
    from datamodules.celeba import CelebADataModule
    from lightning_modules.face_attributes import FaceAttributeClassifier

    torch.manual_seed(0)
    classifier = FaceAttributeClassifier(model_name="resnet10t", model_kwargs=NET, lr=1e-2)
    data = CelebADataModule(
        root=str(root / "celeba"), image_size=SIDE, split="official", crop=crop,
        batch_size=8, num_workers=0,
    )  # fmt: skip
    trainer = cpu_trainer(out, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(classifier, datamodule=data)
    path = out / "classifier.ckpt"
    trainer.save_checkpoint(path)
    return path, classifier.eval()


@pytest.fixture(scope="module")
def checkpoint(synthetic_faces_root, tmp_path_factory):
    return _classifier_checkpoint(synthetic_faces_root, tmp_path_factory.mktemp("phi_id"))


def _faces(count: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _classifier_input(images: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS["imagenet"])
    return ((images + 1) / 2 - mean) / std


def test_features_are_the_classifiers_penultimate_layer(checkpoint):
    path, classifier = checkpoint
    features = load_identity_features(path)
    assert features.image_size == SIDE
    faces = _faces(3, SIDE)
    out = features(faces)
    net = classifier.model
    with torch.no_grad():
        expected = net.forward_head(net.forward_features(_classifier_input(faces)), True)
        logits = classifier(_classifier_input(faces))
    assert out.shape == (3, net.num_features)
    torch.testing.assert_close(out, expected)
    # the classifier's linear head on these features gives its logits: the layer before the head
    torch.testing.assert_close(net.get_classifier()(out), logits, rtol=1e-5, atol=1e-5)
    # other sizes (128 px faces, G_S's 2 H_LR output) are resized to the classifier's side first
    large = _faces(2, 128, seed=1)
    resized = F.interpolate((large + 1) / 2, size=(SIDE, SIDE), mode="bilinear") * 2 - 1
    torch.testing.assert_close(features(large), features(resized))


def test_features_are_frozen_but_pass_gradients_to_the_images(checkpoint):
    features = load_identity_features(checkpoint[0])
    assert not any(p.requires_grad for p in features.parameters())
    features.train()
    assert not any(m.training for m in features.modules())  # batch norm keeps its statistics
    faces = _faces(2, SIDE).requires_grad_(True)
    target = _faces(2, SIDE, seed=3)
    distance = features.distance(faces, target)
    expected = (features(faces) - features(target)).square().mean()
    torch.testing.assert_close(distance, expected)
    assert features.distance(target, target) == 0
    distance.backward()
    assert faces.grad is not None and faces.grad.abs().sum() > 0


def test_a_missing_or_unusable_checkpoint_says_how_to_make_one(checkpoint, tmp_path):
    missing = tmp_path / "nowhere.ckpt"
    with pytest.raises(IdentityWeightsError, match="nowhere.ckpt not found") as error:
        load_identity_features(missing)
    assert PRODUCE_COMMAND in str(error.value) and "id_weights=" in str(error.value)
    with pytest.raises(IdentityWeightsError, match="no id_weights given"):
        load_identity_features(None)
    with pytest.raises(IdentityWeightsError, match=PRODUCE_COMMAND):
        ExemplarSRModule(**(TINY | {"id_net": "celeba_attr"}))
    with pytest.raises(ValueError, match="id_weights is read only with 'celeba_attr'"):
        ExemplarSRModule(**(TINY | {"id_weights": str(checkpoint[0])}))
    lpips_only = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, lpips_only)
    with pytest.raises(IdentityWeightsError, match="datamodule_hyper_parameters"):
        load_identity_features(lpips_only)


def test_a_classifier_trained_on_another_crop_is_refused(synthetic_faces_root, tmp_path):
    path, _ = _classifier_checkpoint(synthetic_faces_root, tmp_path, crop="none")
    with pytest.raises(IdentityWeightsError, match="crop='none'.*'face128'"):
        load_identity_features(path)


# --- in ExemplarSRModule -------------------------------------------------------------------------


class Rows(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "image_lr": _faces(1, 16, seed=index)[0],
            "image_hr": _faces(1, 128, seed=10 + index)[0],
            "exemplars": _faces(2, 128, seed=20 + index),
        }


def test_the_identity_term_joins_both_perceptual_losses_and_never_trains(checkpoint, tmp_path):
    torch.manual_seed(0)
    phi_id = {"id_net": "celeba_attr", "id_weights": str(checkpoint[0])}
    module = ExemplarSRModule(**(TINY | phi_id))
    assert module.identity is not None
    sr, hr = _faces(4, 128, seed=5), _faces(4, 128, seed=6)
    small, target = _faces(4, 32, seed=7), _faces(4, 32, seed=8)  # L_p^s at 2 H_LR
    for images, reference in ((sr, hr), (small, target)):
        lpips = module.lpips(images, reference).mean()
        identity = module.identity.distance(images, reference)
        assert identity > 0
        torch.testing.assert_close(module._perceptual(images, reference), lpips + identity)
    before = {k: v.clone() for k, v in module.identity.state_dict().items()}
    trainer = cpu_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(module, DataLoader(Rows(), batch_size=4))
    for name, value in module.identity.state_dict().items():
        assert torch.equal(value, before[name]), name  # weights and batch-norm statistics
    trained = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in module.identity.parameters()}
    assert torch.isfinite(trainer.callback_metrics["train/perceptual"])
    assert torch.isfinite(trainer.callback_metrics["train/perceptual_s"])
