"""ISTRC's stage 1 when no FaceNet checkpoint is given: the encoder E trained as a stand-in with
FaceNet's triplet loss (spec ``istrc``, "Losses and training", E stand-in), and its face
verification on held-out identities (spec "Evaluation", the suite's addition).

Training: batches of P identities x K images (DEFAULT 32 x 4: ``CelebADataModule(
identities_per_batch=32, images_per_identity=4)``, official split, ``normalize="signed"``), the
loss of ``istrc.triplet_loss`` (all anchor-positive pairs, semi-hard negatives, alpha = 0.2),
Adam lr 1e-3, 20 epochs (the trainer's ``max_epochs``; DEFAULT). Under DDP each rank mines in its
own batch (``ClassSetSampler`` gives every rank P identities of its own) and DDP averages the
gradients; nothing crosses ranks in the step.

Verification (validation and test epochs): the embeddings of the whole evaluated split are
gathered from every rank in dataset order (``callbacks.gather.gather_rows``), so every rank holds
what one process would; from the split's identities ``verification_pairs`` draws ``pairs_same``
same + ``pairs_different`` different pairs (3,000 + 3,000 DEFAULT; fewer, with a warning, where
the split holds fewer), seeded by ``pair_seed``, and on each of the Euclidean ||z1 - z2|| and the
spherical arccos(z1 . z2) distances it reports the ROC AUC and the ``folds``-fold cross-validated
accuracy of the fitted threshold (``components.verification``). Both distances are taken on the
embeddings re-normalised in float64 (a float32 rounding step), where ||z1 - z2||^2 = 2 - 2 cos
theta holds to 1e-16: both rank the pairs alike, so their AUCs agree (the paper's "a little
greater" for the spherical one cannot be reproduced; both are logged). Computed on every rank from
the gathered data and logged with ``log_global``: exact and equal on all ranks. Under DDP the
evaluation must cover whole splits (``limit_val_batches`` would break the strided shares, which
``gather_rows`` refuses).

Logged: ``train/loss`` (mean over the epoch's triplets), ``train/active``, ``train/semi_hard``,
``train/hard`` (fractions of the mined triplets); ``{val,test}/auc_euclidean``,
``{val,test}/auc_spherical``, ``{val,test}/accuracy_euclidean``,
``{val,test}/accuracy_spherical`` and ``{val,test}/pairs`` (pairs used).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.nn import functional as F
from torch.optim import Adam

from callbacks.gather import gather_rows
from callbacks.global_log import log_global
from datamodules.verification_pairs import pair_capacity, verification_pairs
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.verification import (
    cross_validated_accuracy,
    pair_distances,
    roc_auc,
)
from lightning_modules.istrc.began import SIGNED
from lightning_modules.istrc.face_encoder import FaceNetEncoder
from lightning_modules.istrc.triplet_loss import MARGIN, batch_triplet_loss

__all__ = ["FaceNetTriplet", "verification_scores"]

TRAIN_LOGS = ("loss", "active", "semi_hard", "hard")
DISTANCES = ("euclidean", "spherical")


def verification_scores(
    embeddings: Tensor,
    identities: Tensor,
    same: int = 3000,
    different: int = 3000,
    folds: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """AUC and cross-validated accuracy of both distances on seeded pairs of one split.

    Args:
        embeddings: (N, D) the split's embeddings (unit vectors; re-normalised in float64).
        identities: Integer (N,) their identities.
        same: Same-identity pairs wanted (capped at what the split holds, with a warning).
        different: Different-identity pairs wanted (capped likewise).
        folds: Folds of the threshold's cross-validation.
        seed: Seed of the pairs.

    Returns:
        ``{"auc_euclidean", "auc_spherical", "accuracy_euclidean", "accuracy_spherical",
        "pairs"}``; empty (with a warning) when the split cannot give pairs of both kinds and
        ``folds`` pairs in all.
    """
    identities = identities.detach().cpu()
    same_max, different_max = pair_capacity(identities)
    counts = min(same, same_max), min(different, different_max)
    if counts != (same, different):
        rank_zero_warn(
            f"verification: the split holds {same_max} same and {different_max} different "
            f"pairs; using {counts[0]} + {counts[1]} instead of {same} + {different}"
        )
    if min(counts) == 0 or sum(counts) < folds:
        rank_zero_warn(f"verification skipped: {counts[0]} same + {counts[1]} different pairs")
        return {}
    pairs = verification_pairs(identities, *counts, seed=seed)
    unit = F.normalize(embeddings.detach().cpu().double(), dim=1)
    scores: dict[str, float] = {}
    for metric in DISTANCES:
        distances = pair_distances(unit, pairs.index, metric=metric)
        scores[f"auc_{metric}"] = roc_auc(distances, pairs.same)
        scores[f"accuracy_{metric}"] = cross_validated_accuracy(distances, pairs.same, folds)
    scores["pairs"] = float(sum(counts))
    return scores


class FaceNetTriplet(LightningModule):
    """The FaceNet stand-in: ``encoder`` (a ``FaceNetEncoder``) trained with the triplet loss.

    Batches: ``image`` float (B, 3, S, S) in [-1, 1] and ``identity`` long (B,); training batches
    grouped by identity (P x K). ``forward`` is the encoder. Later stages take the trained
    encoder frozen (``face_encoder.frozen_face_encoder`` with this run's checkpoint, or
    ``run.init_from`` with ``source: encoder``).

    Args:
        backbone: ``FaceNetEncoder``'s backbone (``inception_resnet_v2``; ``latentlab/vgg`` in
            tests).
        dim: Size of z (128).
        input_size: Side of the encoder's input (160; 32 at the test scale).
        weights_file: The encoder's own weights (``FaceNetEncoder``): e.g. to evaluate a
            converted FaceNet with ``validate`` / ``test``; None trains from the start.
        backbone_weights: ImageNet weights of the trunk (``create_backbone``); None: random.
        model_kwargs: Extra backbone arguments (tests shrink it).
        margin: alpha of the triplet loss (0.2).
        lr: Adam's learning rate (1e-3).
        pairs_same: Same-identity verification pairs per evaluated split (3,000).
        pairs_different: Different-identity pairs (3,000).
        folds: Folds of the threshold's cross-validation (10).
        pair_seed: Seed of the verification pairs.
    """

    def __init__(
        self,
        backbone: str = "inception_resnet_v2",
        dim: int = 128,
        input_size: int = 160,
        weights_file: str | None = None,
        backbone_weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        margin: float = MARGIN,
        lr: float = 1e-3,
        pairs_same: int = 3000,
        pairs_different: int = 3000,
        folds: int = 10,
        pair_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.encoder = FaceNetEncoder(
            backbone, dim, input_size, weights_file, backbone_weights, model_kwargs
        )
        self.means = EpochMeans(f"train/{name}" for name in TRAIN_LOGS)
        self._embeddings: list[Tensor] = []
        self._identities: list[Tensor] = []

    def forward(self, images: Tensor) -> Tensor:
        """E(x): [-1, 1] images (B, 3, H, W) -> unit vectors (B, dim)."""
        return self.encoder(images)

    # --- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the data: signed images and, for a fit, identity-grouped training batches."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        check_datamodule(self, {k: v for k, v in SIGNED.items() if hasattr(datamodule, k)})
        if stage == "fit" and hasattr(datamodule, "identity_batch_shape"):
            shape = datamodule.identity_batch_shape
            if shape is None or shape[1] < 2:
                raise ValueError(
                    f"FaceNetTriplet mines triplets in batches of P identities x K >= 2 images, "
                    f"but {type(datamodule).__name__} serves {shape or 'shuffled batches'}: set "
                    "--data.init_args.identities_per_batch=32 and "
                    "--data.init_args.images_per_identity=4"
                )

    # --- steps -----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        identity = batch["identity"]
        mined = batch_triplet_loss(self.encoder(batch["image"]), identity, self.hparams.margin)
        if mined.triplets == 0:
            raise ValueError(
                f"FaceNetTriplet: a training batch of {len(identity)} images gave no triplet (no "
                "identity twice, or one identity only): train on identity-grouped batches "
                "(CelebADataModule identities_per_batch / images_per_identity)"
            )
        values = {
            "train/loss": mined.loss.detach(),
            "train/active": mined.active,
            "train/semi_hard": mined.semi_hard,
            "train/hard": mined.hard,
        }
        self.means.log(self, values, batch_size=mined.triplets, on_step=True, on_epoch=True)
        return mined.loss

    def on_validation_epoch_start(self) -> None:
        self._reset()

    def on_test_epoch_start(self) -> None:
        self._reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        self._verify("val")

    def on_test_epoch_end(self) -> None:
        self._verify("test")

    def configure_optimizers(self) -> Adam:
        return Adam(self.encoder.parameters(), lr=self.hparams.lr)

    # --- helpers ---------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._embeddings, self._identities = [], []

    def _collect(self, batch: dict[str, Any]) -> None:
        self._embeddings.append(self.encoder(batch["image"]).detach())
        self._identities.append(batch["identity"].detach())

    def _verify(self, stage: str) -> None:
        """Gather the split's embeddings from every rank, score the pairs, log on all ranks."""
        if self.trainer.sanity_checking or not self._embeddings:
            self._reset()
            return
        embeddings = gather_rows(torch.cat(self._embeddings))
        identities = gather_rows(torch.cat(self._identities))
        self._reset()
        hp = self.hparams
        scores = verification_scores(
            embeddings, identities, hp.pairs_same, hp.pairs_different, hp.folds, hp.pair_seed
        )
        if scores:
            log_global(self, {f"{stage}/{name}": value for name, value in scores.items()})
