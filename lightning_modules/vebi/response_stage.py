"""VEBI's interpretation input: the response vector x of every image (spec section 3.3.1 and
section 4, stage 2: "extract X and L on the training set").

``ResponseExtractor`` is a predict-only LightningModule holding the frozen classifier F (load it
with ``--run.init_from`` part ``{source: net, target: net}`` of a ``VEBIClassifier`` run). Its
``predict_step`` returns x (``responses.response_vectors``), the label and F's prediction of each
image; ``WriteResponses`` writes them as ``responses_<split>.pt`` in the run folder, every image
once in dataset order whatever the number of DDP processes (``callbacks.split_tensors``), with
the (layer, filter) table of x (``layers``: source, read, kind and width per layer). The mu-lasso
and everything after it read these files.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from lightning import LightningModule, Trainer

from callbacks.split_tensors import WriteSplitTensors
from lightning_modules.components.frozen import FrozenSubmodules, freeze
from lightning_modules.vebi.nets import NetName, build_net
from lightning_modules.vebi.responses import ResponseIndex, response_vectors

__all__ = ["RESPONSES_PREFIX", "ResponseExtractor", "WriteResponses"]

RESPONSES_PREFIX = "responses"


class ResponseExtractor(FrozenSubmodules, LightningModule):
    """The frozen F and the table of its response layers (predict only).

    Args:
        net: F's architecture (``vebi.nets``; the classifier run's ``net``).
        num_classes: F's classes (the classifier run's ``num_classes``).
        image_size: The an8Flower CNN's input side (the classifier run's ``image_size``).
        include_pool: Also read the pooling layers (spec decision 1's ``include_pool``).
    """

    frozen = ("net",)

    def __init__(
        self, net: NetName, num_classes: int, image_size: int = 64, include_pool: bool = False
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = freeze(build_net(net, num_classes, image_size=image_size))
        self.index = ResponseIndex.of(self.net, include_pool)

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """A batch -> ``{"x" (B, m) float32, "label", "prediction", "image_id"}``."""
        x, logits = response_vectors(self.net, batch["image"], self.index)
        ids = batch.get("image_id", batch.get("index"))
        return {
            "x": x,
            "label": batch["label"].long(),
            "prediction": logits.argmax(1),
            "image_id": [str(int(i)) if torch.is_tensor(i) else str(i) for i in ids],
        }


class WriteResponses(WriteSplitTensors):
    """``responses_<split>.pt`` per predicted split, with x's layer table.

    Args:
        output_dir: Folder of the files; default the run folder.
    """

    required = ("x", "label", "prediction", "image_id")

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(prefix=RESPONSES_PREFIX, output_dir=output_dir)

    def metadata(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        layers = [asdict(layer) for layer in pl_module.index.layers]
        return super().metadata(trainer, pl_module) | {"layers": layers}
