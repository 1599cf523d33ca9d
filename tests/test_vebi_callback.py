"""``LogVEBIExplanations``: VEBI panels of a classifier during fit, on the suite's classifiers.

The learning check uses a planted dataset: every image carries a green distractor patch at a
random place, and class-1 images also a red patch at a fixed place (the planted part). A trained
net's explanation of class 1 must put its combined heatmap on the red patch rather than on the
green one (share 0.91 at these seeds). The controls: an untrained net (the same fit at learning
rate 0) and a net and lasso given shuffled labels; at least one must miss the same bar. Here the
untrained net does not miss it (0.98: its random first-layer filters are already colour-selective,
and the lasso on the true labels picks the red ones), the shuffled labels do (0.73).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from lightning import LightningModule
from lightning.pytorch.loggers import CSVLogger
from quiet_trainer import cpu_trainer
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from lightning_modules.vebi.classifier_view import classifier_view
from lightning_modules.vebi.explanation_callback import KEY, LogVEBIExplanations

SIDE, PATCH = 16, 4
PLANTED = (slice(2, 2 + PATCH), slice(2, 2 + PATCH))  # rows, columns of the red patch
# The bar a real explanation clears: the share of the (planted + distractor) heat on the planted
# patch, averaged over the explained class-1 images (0.5 = no preference).
BAR = 0.8


class PlantedPatches(Dataset):
    """Noise images (3, 16, 16); a green 4x4 patch at a random place in the lower half of every
    image; a red one at ``PLANTED`` in class 1. ``first_positive`` puts class 1 first."""

    def __init__(self, count: int, seed: int, shuffle_labels: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(count) % 2
        self.images = 0.1 * torch.rand(count, 3, SIDE, SIDE, generator=g)
        self.distractors = torch.randint(0, SIDE - PATCH + 1, (count, 2), generator=g)
        self.distractors[:, 0] = torch.randint(8, SIDE - PATCH + 1, (count,), generator=g)
        for i in range(count):
            r, c = self.distractors[i].tolist()
            self.images[i, 1, r : r + PATCH, c : c + PATCH] = 1.0
            if self.labels[i] == 1:
                self.images[(i, 0, *PLANTED)] = 1.0
        self.targets = (
            self.labels[torch.randperm(count, generator=g)] if shuffle_labels else self.labels
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.targets[i]}


class TinyClassifier(LightningModule):
    """conv 3->8 3x3, ReLU, maxpool 2, conv 8->16 3x3, ReLU, maxpool 2, fc 256->32, ReLU, fc 2."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 8, 3, padding=1)), ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(8, 16, 3, padding=1)), ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten(1)),
            ("fc3", nn.Linear(16 * 4 * 4, 32)), ("relu3", nn.ReLU()), ("fc4", nn.Linear(32, 2)),
        ]))  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch["image"]), batch["label"])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.cross_entropy(self(batch["image"]), batch["label"]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class CheckedExplanations(LogVEBIExplanations):
    """Records, at every drawing, whether it left the weights, buffers, every module's
    train/eval flag and the torch random state as they were."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.untouched: list[bool] = []

    def draw(self, trainer, pl_module) -> None:
        state = {k: v.clone() for k, v in pl_module.state_dict().items()}
        modes = [m.training for m in pl_module.modules()]
        rng = torch.get_rng_state()
        super().draw(trainer, pl_module)
        after = pl_module.state_dict()
        self.untouched.append(
            all(torch.equal(v, after[k]) for k, v in state.items())
            and modes == [m.training for m in pl_module.modules()]
            and torch.equal(rng, torch.get_rng_state())
        )


def planted_share(panel) -> float:
    """Mean share of the combined map's heat on the planted patch, of the heat on both patches,
    over the explained class-1 images."""
    (explanation,) = panel.explanations
    shares = []
    for i, heat in enumerate(explanation.combined):
        r, c = VAL.distractors[i].tolist()
        planted = heat[PLANTED].sum()
        distractor = heat[r : r + PATCH, c : c + PATCH].sum()
        if VAL.labels[i] == 1:
            shares.append(float(planted / (planted + distractor).clamp_min(1e-12)))
    return sum(shares) / len(shares)


VAL = PlantedPatches(16, seed=1)


def fit_with_panels(tmp_path, lr: float = 0.01, shuffle_labels: bool = False, epochs: int = 2):
    torch.manual_seed(0)
    module = TinyClassifier(lr)
    callback = CheckedExplanations(
        net="net", train_images=200, top_k=3, num_images=16, classes=[1], batch_size=100,
        max_iter=1000, progress=False,
    )  # fmt: skip
    train = PlantedPatches(256, seed=0, shuffle_labels=shuffle_labels)
    trainer = cpu_trainer(
        tmp_path, max_epochs=epochs, callbacks=[callback], logger=CSVLogger(tmp_path, name="run")
    )
    trainer.fit(
        module, DataLoader(train, batch_size=32, shuffle=True), DataLoader(VAL, batch_size=16)
    )
    return module, callback, trainer


@pytest.mark.slow
def test_panel_written_and_explanation_on_the_planted_patch(tmp_path):
    module, callback, _ = fit_with_panels(tmp_path)
    pngs = sorted((tmp_path / "run").rglob(f"{KEY.replace('/', '_')}_step*.png"))
    assert [p.name for p in pngs] == [f"{KEY.replace('/', '_')}_step{s}.png" for s in (16, 8)]
    assert planted_share(callback.last) > BAR
    assert callback.untouched == [True, True]
    assert module.training and all(m.training for m in module.modules())


@pytest.mark.slow
def test_controls_do_not_localize(tmp_path):
    _, untrained, _ = fit_with_panels(tmp_path / "untrained", lr=0.0)
    _, shuffled, _ = fit_with_panels(tmp_path / "shuffled", shuffle_labels=True)
    shares = planted_share(untrained.last), planted_share(shuffled.last)
    assert min(shares) <= BAR, shares


# ---------------------------------------------------------------------- configuration errors
def test_a_missing_net_names_the_children():
    with pytest.raises(ValueError, match=r"no submodule 'model'.*children are: net \(Sequential\)"):
        LogVEBIExplanations(net="model").setup(None, TinyClassifier(), "fit")


def test_an_unsupported_module_is_named_with_the_reason():
    class ScaledConv(nn.Conv2d):  # a subclass may change the forward: refused
        pass

    module = TinyClassifier()
    module.net.conv1 = ScaledConv(3, 8, 3, padding=1)
    with pytest.raises(ValueError, match=r"through net\.conv1 \(.*ScaledConv\).*not subclasses"):
        LogVEBIExplanations().setup(None, module, "fit")


def test_a_resnet_face_attribute_classifier_is_refused_at_setup():
    from lightning_modules.face_attributes import FaceAttributeClassifier

    module = FaceAttributeClassifier(model_name="resnet10t", num_attributes=4)
    with pytest.raises(
        ValueError, match=r"through model \(timm\.models\.resnet\.ResNet\).*ResNets"
    ):
        LogVEBIExplanations(net="model", label_key="attributes").setup(None, module, "fit")


def test_classes_beyond_the_outputs_are_refused():
    with pytest.raises(ValueError, match=r"classes \[2\] for a classifier with 2 outputs"):
        LogVEBIExplanations(classes=[2]).setup(None, TinyClassifier(), "fit")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"mu": 0.0}, "mu must be > 0"),
        ({"mean": [0.5]}, "both mean and std"),
        ({"every_n_epochs": None, "at_fit_end": False}, "never draws"),
        ({"classes": []}, "classes must be non-empty"),
    ],
)
def test_arguments_are_checked(kwargs, error):
    with pytest.raises(ValueError, match=error):
        LogVEBIExplanations(**kwargs)


def test_the_view_shares_the_layers_and_names_them_by_path():
    module = TinyClassifier()
    view = classifier_view(module, "net")
    assert dict(view.named_parameters()) == {
        f"net.{k}": v for k, v in module.net.named_parameters()
    }  # the same tensors, not copies
    images = torch.rand(2, 3, SIDE, SIDE)
    assert torch.equal(view(images), module(images))


def _quick_fit(tmp_path, module, callback) -> None:
    data = DataLoader(PlantedPatches(8, seed=0), batch_size=8)
    cpu_trainer(tmp_path, callbacks=[callback], limit_train_batches=1).fit(module, data, data)


def test_a_wrong_label_key_lists_the_batch_keys(tmp_path):
    callback = LogVEBIExplanations(label_key="attributes", train_images=8, progress=False)
    with pytest.raises(ValueError, match=r"batch\['attributes'\].*hold \['image', 'label'\]"):
        _quick_fit(tmp_path, TinyClassifier(), callback)


def test_a_head_that_is_not_the_forward_is_caught(tmp_path):
    class MaxPooledHead(LightningModule):  # trunk -> global *max* pool -> fc
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.fc = nn.Linear(4, 2)

        def forward(self, images):
            return self.fc(self.trunk(images).amax((2, 3)))

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch["image"]), batch["label"])

        def validation_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    callback = LogVEBIExplanations(net="trunk", head="fc", train_images=8, progress=False)
    with pytest.raises(ValueError, match="other scores than MaxPooledHead.forward"):
        _quick_fit(tmp_path, MaxPooledHead(), callback)


# ---------------------------------------------------------------------- the suite's classifiers
def _suite_fit(tmp_path, module, datamodule, callback) -> CheckedExplanations:
    trainer = cpu_trainer(
        tmp_path, callbacks=[callback], limit_train_batches=1, limit_val_batches=1,
        logger=CSVLogger(tmp_path, name="run"),
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    assert len(list((tmp_path / "run").rglob("val_vebi_explanations_step*.png"))) == 1
    assert callback.untouched == [True]
    assert all(m.training for m in module.modules())
    return callback


@pytest.mark.slow
def test_runs_on_a_minmaxcam_vgg16(tmp_path):
    from datamodules.cub import CUBDataModule
    from datamodules.synthetic.birds import make_synthetic_cub
    from lightning_modules.minmaxcam import MinMaxCAM

    root = make_synthetic_cub(tmp_path / "cub", 4, (4, 1, 2), (40, 48), 0)
    data = CUBDataModule(
        root=str(root), image_size=32, resize_size=36, classes_per_batch=2, samples_per_class=2,
        eval_batch_size=4, num_workers=0,
    )  # fmt: skip
    torch.manual_seed(0)
    module = MinMaxCAM(backbone="vgg16", num_classes=4, samples_per_class=2)
    callback = CheckedExplanations(
        net="backbone", head="fc", train_images=16, top_k=3, num_images=2, max_iter=200,
        progress=False,
    )  # fmt: skip
    panel = _suite_fit(tmp_path, module, data, callback).last
    layers = {layer.source for layer in panel.index.layers}
    assert {"backbone.features.0", "backbone.conv6.0"} <= layers and "fc" not in layers
    (explanation,) = panel.explanations
    assert torch.equal(explanation.classes, panel.scores.argmax(1))  # the predicted class
    assert explanation.heatmaps.shape == (2, 3, 32, 32)
    assert (explanation.pairs >= 0).any() and explanation.combined.amax() == 1


@pytest.mark.slow
def test_runs_on_the_face_attribute_classifier(tmp_path, synthetic_faces_root):
    from datamodules.celeba import CelebADataModule
    from lightning_modules.face_attributes import FaceAttributeClassifier

    data = CelebADataModule(
        root=str(synthetic_faces_root / "celeba"), image_size=32, batch_size=8, num_workers=0
    )
    torch.manual_seed(0)
    module = FaceAttributeClassifier(
        model_name="latentlab/vgg", num_attributes=40,
        model_kwargs={"widths": [8, 16], "convs_per_stage": 1},
    )  # fmt: skip
    callback = CheckedExplanations(
        net="model", label_key="attributes", train_images=1000, top_k=2, num_images=2,
        classes=[0, 39], max_iter=200, progress=False,
    )  # fmt: skip
    panel = _suite_fit(tmp_path, module, data, callback).last
    # The lasso targets are the multi-hot rows: an attribute no training face has gets W = 0 (its
    # target column is zero), every other one some weight.
    positives = data.train_attributes.sum(0)
    assert panel.training_images == len(data.train_attributes) and (positives == 0).any()
    assert panel.weights.shape[1] == 40 and (panel.weights[:, positives == 0] == 0).all()
    assert (panel.weights[:, positives > 0] != 0).any(0).all()
    assert [int(e.classes[0]) for e in panel.explanations] == [0, 39]
    assert panel.explanations[0].heatmaps.shape == (2, 2, 32, 32)


class RankLog(LogVEBIExplanations):
    """Appends "<global step> <drew a panel>" to ``<out>.<rank>`` at every drawing."""

    def __init__(self, out: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.out = out

    def draw(self, trainer, pl_module) -> None:
        super().draw(trainer, pl_module)
        with open(f"{self.out}.{trainer.global_rank}", "a") as file:
            file.write(f"{trainer.global_step} {self.last is not None}\n")


@pytest.mark.slow
def test_under_ddp_rank_zero_draws_alone_and_training_goes_on(tmp_path):
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    out = str(tmp_path / "draws")
    callback = RankLog(out, train_images=64, top_k=2, num_images=2, max_iter=200, progress=False)
    trainer = cpu_trainer(
        tmp_path, max_epochs=2, devices=2, callbacks=[callback],
        strategy=DDPStrategy(start_method="spawn", timeout=timedelta(seconds=60)),
    )  # fmt: skip  # a collective on one rank only fails after 60 s instead of hanging
    data = PlantedPatches(64, seed=0)
    trainer.fit(TinyClassifier(), DataLoader(data, batch_size=16), DataLoader(VAL, batch_size=8))
    ranks = [open(f"{out}.{rank}").read().split("\n")[:-1] for rank in (0, 1)]
    assert ranks == [["2 True", "4 True"], ["2 False", "4 False"]]  # epoch 1 trained after a draw
