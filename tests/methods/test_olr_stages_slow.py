"""OLR's probe and decoder stages reach the spec's synthetic assertions 3 and 6 (slow).

The Siamese encoder is replaced by a stand-in of the same class that carries the labels: a
``SiameseEncoder`` trained for a few epochs, with a linear head, to predict the labels of the
clean 46 px images of the small twin (5,000 train / 1,017 test). The probe and the decoder are
then trained by their LightningModules on the frozen stand-in, loaded as the CLI would load the
Siamese run's encoder (``--run.init_from`` parts into ``encoder``). Controls, once each: the probe
trained on label-shuffled train labels, and an untrained decoder, fail the same bounds.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from test_olr_stages import Images, trainer
from torch.utils.data import DataLoader

from callbacks.image_quality import LogImageQuality
from datamodules.olr import OLRDataModule
from datamodules.synthetic.face_factors import RENDERED_ATTRIBUTES
from experiments.init_from import InitFrom, load_init_from
from lightning_modules.olr.accuracy import majority_baseline_accuracy, per_label_accuracy
from lightning_modules.olr.encoder import SiameseEncoder
from lightning_modules.olr.probe import LinearProbe
from lightning_modules.olr.probe_module import OLRLinearProbe
from lightning_modules.olr.reconstructor import OLRReconstructor

pytestmark = pytest.mark.slow

SIZE, K, WIDTHS, TRAIN_COUNT = 46, 8, [16, 32, 64], 5000
STAND_IN_EPOCHS, PROBE_EPOCHS, DECODER_EPOCHS = 8, 10, 6


class Loaded(L.LightningDataModule):
    """The twin's splits held in memory (decoded once), served as OLRDataModule serves them."""

    def __init__(self, train: Images, test: Images, batch_size: int) -> None:
        super().__init__()
        self.save_hyperparameters({"image_size": SIZE})
        self.train, self.test, self.batch_size = train, test, batch_size
        self.num_attributes = train.labels.shape[1]

    @property
    def train_attributes(self) -> torch.Tensor:
        return self.train.labels.to(torch.uint8)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=256)

    test_dataloader = val_dataloader


def _stack(loader: DataLoader) -> Images:
    images, labels = zip(*((b["image"], b["attributes"]) for b in loader), strict=True)
    return Images(torch.cat(images), torch.cat(labels))


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    from datamodules.synthetic.faces import write_synthetic_faces

    root = tmp_path_factory.mktemp("olr_small")
    write_synthetic_faces(root, preset="small", seed=0, progress=False)
    dm = OLRDataModule(
        root=str(root / "celeba"),
        image_size=SIZE,
        train_count=TRAIN_COUNT,
        batch_size=256,
        num_workers=0,
    )
    dm.setup("fit")
    train = _stack(dm._loader("images_train"))
    test = _stack(dm._loader("images_test"))
    return {"train": train, "test": test, "names": dm.attribute_names}


@pytest.fixture(scope="module")
def stand_in(twin, tmp_path_factory):
    """A label-trained SiameseEncoder saved as a Siamese run's checkpoint (``encoder.`` keys)."""
    torch.manual_seed(0)
    encoder = SiameseEncoder(embedding_dim=K, widths=tuple(WIDTHS))
    head = LinearProbe(embedding_dim=K)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    train = twin["train"]
    for _ in range(STAND_IN_EPOCHS):
        for rows in torch.randperm(len(train)).split(64):
            loss = F.binary_cross_entropy_with_logits(
                head(encoder(train.images[rows])), train.labels[rows]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    encoder.eval(), head.eval()
    with torch.no_grad():
        probs = torch.cat([head(encoder(x)).sigmoid() for x in twin["test"].images.split(256)])
    path = tmp_path_factory.mktemp("siamese") / "last.ckpt"
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    torch.save({"state_dict": state}, path)
    return {"checkpoint": str(path), "classifier_probs": probs}


def _load(model, stand_in):
    load_init_from(model, [InitFrom(stand_in["checkpoint"], source="encoder", target="encoder")])
    return model


def _fit(model, data, epochs: int, callbacks: list | None = None) -> dict:
    fit = trainer(max_epochs=epochs, callbacks=callbacks, limit_val_batches=0)
    if epochs:
        fit.fit(model, data)
    return fit.test(model, data, verbose=False)[0]


def _rendered(names: list[str]) -> torch.Tensor:
    return torch.tensor([n in RENDERED_ATTRIBUTES for n in names])


def _probe_groups(twin, labels: torch.Tensor, stand_in) -> dict[str, float]:
    """Probe accuracy, majority baseline and classifier accuracy on rendered / other labels."""
    model = _load(OLRLinearProbe(embedding_dim=K, widths=WIDTHS), stand_in)
    data = Loaded(Images(twin["train"].images, labels), twin["test"], batch_size=256)
    result = _fit(model, data, PROBE_EPOCHS)
    model.eval()
    test = twin["test"]
    with torch.no_grad():
        probs = torch.cat([model(x).sigmoid() for x in test.images.split(256)])
    accuracy = per_label_accuracy(probs, test.labels)
    majority = majority_baseline_accuracy(labels, test.labels)
    teacher = per_label_accuracy(stand_in["classifier_probs"], test.labels)
    assert result["test/majority_accuracy"] == pytest.approx(majority.mean().item(), abs=1e-6)
    rendered = _rendered(twin["names"])
    return {
        "probe": accuracy[rendered].mean().item(),
        "majority": majority[rendered].mean().item(),
        "classifier": teacher[rendered].mean().item(),
        "probe_other": accuracy[~rendered].mean().item(),
        "majority_other": majority[~rendered].mean().item(),
    }


def test_probe_beats_the_majority_baseline_on_rendered_labels(twin, stand_in):
    """Spec assertion 3's conditions (the stand-in's own head plays the classifier C)."""
    groups = _probe_groups(twin, twin["train"].labels, stand_in)
    print("probe groups:", groups)
    assert groups["probe"] >= groups["majority"] + 0.10, groups
    assert groups["probe"] >= groups["classifier"] - 0.05, groups
    assert groups["probe_other"] <= groups["majority_other"] + 0.03, groups


def test_probe_on_shuffled_labels_fails_the_bound(twin, stand_in):
    generator = torch.Generator().manual_seed(0)
    shuffled = twin["train"].labels[torch.randperm(TRAIN_COUNT, generator=generator)]
    groups = _probe_groups(twin, shuffled, stand_in)
    print("shuffled probe groups:", groups)
    assert groups["probe"] < groups["majority"] + 0.10, groups


def _decoder_result(twin, stand_in, epochs: int) -> dict:
    torch.manual_seed(0)
    model = OLRReconstructor(embedding_dim=K, widths=WIDTHS, image_size=SIZE, channels=16, lr=1e-3)
    data = Loaded(twin["train"], twin["test"], batch_size=32)
    quality = LogImageQuality(stages=["test"])
    return _fit(_load(model, stand_in), data, epochs, callbacks=[quality])


def test_decoder_beats_the_mean_image(twin, stand_in):
    """Spec assertion 6's conditions: SSIM >= mean-image SSIM + 0.05, MSE below the mean image's.

    Both of the reconstruction x^ = Rescale(R(E)): SSIM from LogImageQuality, as in a run.
    """
    result = _decoder_result(twin, stand_in, DECODER_EPOCHS)
    print("decoder:", result)
    assert result["test/ssim"] >= result["test/ssim_mean_image"] + 0.05, result
    assert result["test/mse"] < result["test/mse_mean_image"], result


def test_untrained_decoder_fails_the_bound(twin, stand_in):
    result = _decoder_result(twin, stand_in, 0)
    print("untrained decoder:", result)
    assert result["test/ssim"] < result["test/ssim_mean_image"] + 0.05, result
    assert result["test/mse"] >= result["test/mse_mean_image"], result
