"""Each method's evaluation under two gloo processes logs what one process logs (``ddp_spawn``).

Same items, same weights; the evaluation loaders shard without repeats and the shares are
uneven (9 items: 5 and 4). Values are equal to one process's within ``REL``: per-item outputs
are the same, but each rank averages other batches (float32 batch means added in another order).
Lightning's "use sync_dist=True" warning is an error in the workers.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from lightning import Trainer
from test_ddp_logging import Shards, assert_same_as_one_process

from callbacks.auroc import LogAUROC
from callbacks.wsol.callback import LogWSOLMetrics
from datamodules.mnist_bags import collate_bags
from lightning_modules.face_attributes import FaceAttributeClassifier
from lightning_modules.face_attributes.label_writer import WriteAttributeLabels
from lightning_modules.mil_lstm import LSTMPooling, MILModule
from lightning_modules.mil_lstm.studies import LogMILStudies
from lightning_modules.minmaxcam import MinMaxCAM
from lightning_modules.minmaxcam.region_features import LogRegionFeatures
from lightning_modules.vebi.classifier import VEBIClassifier

pytestmark = pytest.mark.slow

ITEMS = 9
REL = 1e-5
NAMES = ["a", "b", "c", "d"]


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _bags() -> list[dict]:
    g = _generator()
    bags = []
    for i in range(ITEMS):
        length = 2 + i % 4
        bags.append(
            {
                "bag": torch.randn(length, 1, 28, 28, generator=g),
                "instance_labels": torch.zeros(length, dtype=torch.long),
                "bag_label": torch.tensor(float(i % 2)),
                "index": torch.tensor(i),
            }
        )
    return bags


def _instances(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A DataModule's ``instances(split)``: 40 images and their digits."""
    g = _generator()
    return torch.randn(40, 1, 28, 28, generator=g), torch.arange(40) % 10


def _mil() -> MILModule:
    torch.manual_seed(0)
    return MILModule(partial(LSTMPooling, hidden_dim=8), feature_dim=16)


def test_mil_validation_and_its_checkpoint_monitor(tmp_path):
    data = Shards(_bags(), collate=collate_bags, is_regression=False)
    alone = assert_same_as_one_process(tmp_path, _mil, data, "validate", rel=REL)
    assert {"val/loss", "val/error", "val/select", "val/auroc"} <= set(alone)


def test_mil_test_with_the_order_and_clustering_studies(tmp_path):
    data = Shards(_bags(), collate=collate_bags, is_regression=False, instances=_instances)
    studies = partial(LogMILStudies, order_repeats=5, cluster_k=2, tsne=False)
    alone = assert_same_as_one_process(tmp_path, _mil, data, "test", lambda: [studies()], rel=REL)
    assert {"test/loss", "test/error", "test/auroc", "test/cluster_score"} <= set(alone)
    assert {"test/order_error", "test/order_error_std"} <= set(alone)


def _images(with_labels: bool) -> list[dict]:
    g = _generator()
    items = []
    for i in range(ITEMS):
        item = {"image": torch.randn(3, 32, 32, generator=g)}
        if with_labels:
            item |= {"label": torch.tensor(i % 3), "boxes": torch.tensor([[4, 4, 20, 24]])}
        items.append(item)
    return items


def _minmaxcam() -> MinMaxCAM:
    torch.manual_seed(0)
    return MinMaxCAM(backbone="tiny", num_classes=6, width=4, crr_weight=0.0, frr_weight=0.0)


def _cam_callbacks() -> list:
    return [LogWSOLMetrics(image_size=32, workers=1), LogRegionFeatures(classes=[0, 1])]


def test_minmaxcam_test_with_localization_and_region_features(tmp_path):
    data = Shards(_images(with_labels=True), num_classes=6)
    alone = assert_same_as_one_process(tmp_path, _minmaxcam, data, "test", _cam_callbacks, rel=REL)
    assert {"test/accuracy", "test/maxboxacc", "test/top1_loc", "test/dispersion_f"} <= set(alone)


def _faces() -> list[dict]:
    g = _generator()
    return [
        {
            "image": item["image"],
            "attributes": torch.randint(0, 2, (len(NAMES),), generator=g).float(),
            "image_id": f"{i:05d}",
        }
        for i, item in enumerate(_images(with_labels=False))
    ]


def _face_classifier() -> FaceAttributeClassifier:
    torch.manual_seed(0)
    return FaceAttributeClassifier(
        model_name="resnet10t",
        num_attributes=len(NAMES),
        model_kwargs={"channels": [8, 16, 32, 64], "stem_width": 8},
    )


def test_face_attributes_test_thresholds_and_auroc(tmp_path):
    data = Shards(_faces(), attribute_names=NAMES, num_attributes=len(NAMES))
    auroc = partial(LogAUROC, plot=False, csv=False)
    alone = assert_same_as_one_process(
        tmp_path, _face_classifier, data, "test", lambda: [auroc()], rel=REL
    )
    assert {"test/loss", "test/hamming", "test/hamming_tuned", "test/auroc_macro"} <= set(alone)


def test_face_attribute_label_files_do_not_depend_on_the_world_size(tmp_path):
    data = Shards(_faces(), attribute_names=NAMES, num_attributes=len(NAMES))
    files = {}
    for devices in (1, 2):
        out = tmp_path / f"labels_{devices}"
        writer = WriteAttributeLabels(output_dir=str(out), allow_untuned=True)
        trainer = _predict_trainer(devices, writer, tmp_path)
        trainer.predict(_face_classifier(), datamodule=data, return_predictions=False)
        files[devices] = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
    assert "ffhq_hard_labels.txt" in files[1]
    soft = files[2]["ffhq_soft_labels.csv"].decode().splitlines()
    assert [row.split(",")[0] for row in soft[1:]] == [f"{i:05d}" for i in range(ITEMS)]
    assert files[1].keys() == files[2].keys()
    for name in files[1]:
        if not name.endswith(".pt"):  # the tensor file holds the same values (pickled anew)
            assert files[1][name] == files[2][name], name


def _predict_trainer(devices: int, writer, root):
    return Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[writer],
    )


def _digits() -> list[dict]:
    g = _generator()
    return [
        {"image": torch.randn(1, 28, 28, generator=g), "label": torch.tensor(i % 4)}
        for i in range(ITEMS)
    ]


def _vebi_classifier() -> VEBIClassifier:
    torch.manual_seed(0)
    return VEBIClassifier(net="mnist_lenet", num_classes=4)


def test_vebi_classifier_test_accuracy_and_mean_class_accuracy(tmp_path):
    data = Shards(_digits(), num_classes=4)
    alone = assert_same_as_one_process(tmp_path, _vebi_classifier, data, "test", rel=REL)
    assert {"test/loss", "test/accuracy", "test/mca"} <= set(alone)
