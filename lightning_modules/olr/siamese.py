"""OLR stage 2: the Siamese network S trained against a frozen classifier C on occluded pairs.

Karatsiolis & Kamilaris, "Converting Image Labels to Meaningful and Information-rich Embeddings".
For a pair of independently occluded images (a, b) the frozen teacher C gives the logits z_a,
z_b; the target is ``t = sigmoid(z_a) sigmoid(z_b)`` (``targets="occlusion"``, PAPER) or the
temperature-softened ablation; the shared encoder S gives E_a, E_b (L, k) and the loss is
``L_S = mean_l (<e_a^l, e_b^l> - t_l)^2`` (``olr.losses``). The same occluded tensors feed C
and S. Reproduced by ``experiments/olr/*siamese*.yaml``, the stage after ``*teacher*.yaml``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from callbacks.global_log import log_global
from lightning_modules.components.backbones import create_backbone
from lightning_modules.components.cosine_decay import cosine_decay
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.frozen import FrozenSubmodules, freeze
from lightning_modules.olr.encoder import SiameseEncoder
from lightning_modules.olr.losses import pair_loss, pair_targets
from lightning_modules.olr.pair_metrics import ConstantBaseline, EmbeddingMoments
from lightning_modules.olr.pca import COLLAPSE_THRESHOLD, collapsed_labels

__all__ = ["EVAL_STAGES", "OLRSiamese"]

EVAL_STAGES = ("val", "test")
VIEWS = ("image_a", "image_b", "image_a2")  # a batch's occluded images; image_a2 with self pairs
TEACHER_HINT = (
    "load a trained classifier into it: run `make experiment NAME=olr/synthetic_teacher`, then "
    "`make experiment NAME=olr/synthetic_siamese` (its run.init_from loads "
    "{checkpoint: latest:olr/synthetic_teacher, source: model, target: teacher}); or set "
    "model.init_args.allow_untrained_teacher=true"
)


def self_pair_mask(size: int, device: torch.device) -> Tensor:
    """Which of the ``OLRSiamese.all_pairs_losses`` pairs (upper-triangle order over the images
    ``[a, b, a2]``, each block ``size`` long) are the self pairs ``(a_i, a2_i)``."""
    count = 3 * size
    first, second = torch.triu_indices(count, count, offset=1, device=device)
    return (second - first == 2 * size) & (first < size)


class OLRSiamese(FrozenSubmodules, LightningModule):
    """Siamese label-embedding network ``encoder`` trained against the frozen ``teacher``.

    Submodules: ``encoder`` (``SiameseEncoder``, trained) and ``teacher`` (the network of
    ``FaceAttributeClassifier``, i.e. its ``model`` submodule: ``create_backbone(teacher_model_name,
    num_classes=num_labels, model_kwargs=teacher_model_kwargs)``). The teacher never trains: no
    gradients, eval mode in every stage (``train()`` keeps it in eval), outside the optimizer.
    Its weights come from a checkpoint through ``--run.init_from`` (``source: model, target:
    teacher``); fitting with a teacher whose weights were never loaded from a file raises, unless
    ``allow_untrained_teacher`` (tests, ablations).

    Batches: ``fit``/``validate``/``test`` take ``datamodules.olr.OLRDataModule(pairs=True)``
    batches (``image_a``, ``image_b`` occluded, (B, 3, S, S) in [0, 1]); ``predict`` takes clean
    image batches (``image``, ``image_id``, optional ``attributes``) and returns
    ``{"embeddings" (B, L, k) float32, "image_id" list[str], "dataloader_idx" int,
    "attributes" (B, L) when the batch has them}`` for ``olr.embedding_writer.WriteEmbeddings``.

    Logged: ``train/loss`` (step and epoch); per evaluation stage ``<stage>/loss`` (held-out pair
    loss L_S), ``<stage>/baseline_loss`` (loss of the best constant: each label's mean target
    over the held-out pairs themselves, the strictest constant baseline), ``<stage>/loss_ratio``
    (their quotient; the spec's assertion 1 asks <= 0.5), ``<stage>/pc1_ratio_max`` and
    ``<stage>/pc1_ratio_mean`` (per-label PC1 explained-variance ratios of the held-out pairs'
    embeddings, both images); a warning per epoch names the labels above ``collapse_threshold``.
    All are exact over every item of every DDP rank (summed states, ``EpochMeans``).

    Args:
        num_labels: L (38: CelebA without necklace and necktie); checked against the DataModule.
        embedding_dim: k, dimensions per label (32).
        widths: Encoder trunk stage widths (32/64/128/256 for 178 px).
        convs_per_stage: Conv -> BN -> ReLU blocks per trunk stage.
        embed_act: Label-layer activation: ``relu`` (DEFAULT) or ``linear``.
        teacher_model_name: The classifier's timm architecture (its ``model_name``).
        teacher_model_kwargs: The classifier's ``model_kwargs`` (its widths).
        targets: ``occlusion`` (PAPER: product of probabilities) or ``temperature`` (ablation).
        temperature: T of ``targets="temperature"``.
        train_pairs: Pairs the training loss averages over: ``drawn`` (PAPER: the batch's B
            drawn pairs) or ``all`` (every pair of distinct images among the batch's 2B
            occluded images, the drawn ones included: B (2B - 1) pairs from the same forward
            passes; each is still a pair of independently drawn, independently occluded
            images). The held-out loss always uses the drawn pairs.
        self_pair_weight: When the training batches carry self pairs (``image_a2``, from
            ``OLRDataModule(self_pairs=True)``), the share of the training loss that is the mean
            loss of the B self pairs ``(image_a, image_a2)``; the other pairs' mean loss has the
            rest. A self pair's target is ``p_a * p_a2``, so a label's slot sees one pair of
            positives per positive image instead of per pair of positive images.
        lr: Adam learning rate (DEFAULT 1e-4).
        cosine_decay: Decay the learning rate to zero along a cosine over the run's optimizer
            steps (``trainer.estimated_stepping_batches``); False (PAPER: none stated) keeps it
            constant.
        collapse_threshold: PC1 ratio above which a label counts as collapsed (0.95).
        allow_untrained_teacher: Fit even though no teacher weights were loaded.
        label_names: Label names for the collapse warning; None = the DataModule's.
    """

    frozen = ("teacher",)

    def __init__(
        self,
        num_labels: int = 38,
        embedding_dim: int = 32,
        widths: list[int] | None = None,
        convs_per_stage: int = 2,
        embed_act: Literal["relu", "linear"] = "relu",
        teacher_model_name: str = "resnet18",
        teacher_model_kwargs: dict[str, Any] | None = None,
        targets: Literal["occlusion", "temperature"] = "occlusion",
        temperature: float = 2.0,
        train_pairs: Literal["drawn", "all"] = "drawn",
        self_pair_weight: float = 0.5,
        lr: float = 1e-4,
        cosine_decay: bool = False,
        collapse_threshold: float = COLLAPSE_THRESHOLD,
        allow_untrained_teacher: bool = False,
        label_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        pair_targets(torch.zeros(1), torch.zeros(1), targets, temperature)  # checks both
        if train_pairs not in ("drawn", "all"):
            raise ValueError(f"train_pairs must be 'drawn' or 'all', got {train_pairs!r}")
        if not 0.0 <= self_pair_weight <= 1.0:
            raise ValueError(f"self_pair_weight must be in [0, 1], got {self_pair_weight}")
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"{len(label_names)} label_names for num_labels={num_labels}")
        self.encoder = SiameseEncoder(
            num_labels, embedding_dim, widths or [32, 64, 128, 256], convs_per_stage, embed_act
        )
        self.teacher = create_backbone(
            teacher_model_name, num_classes=num_labels, model_kwargs=teacher_model_kwargs
        )
        freeze(self.teacher)
        self.teacher_loaded = False
        self.teacher.register_load_state_dict_post_hook(self._mark_teacher_loaded)
        self.label_names = list(label_names) if label_names else None
        self.losses = EpochMeans(f"{stage}/loss" for stage in ("train", *EVAL_STAGES))
        self.baselines = nn.ModuleDict({s: ConstantBaseline(num_labels) for s in EVAL_STAGES})
        self.moments = nn.ModuleDict(
            {s: EmbeddingMoments(num_labels, embedding_dim) for s in EVAL_STAGES}
        )

    def _mark_teacher_loaded(self, module: nn.Module, incompatible: Any) -> None:
        """Load hook of ``teacher``: its weights came from a file (``init_from``, a checkpoint)."""
        if not incompatible.missing_keys:
            self.teacher_loaded = True

    @property
    def embedding_shape(self) -> tuple[int, int]:
        """(L, k) of one image's embedding."""
        return self.hparams.num_labels, self.hparams.embedding_dim

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) images in [0, 1] -> label embeddings (B, L, k)."""
        return self.encoder(images)

    @torch.no_grad()
    def teacher_logits(self, images: Tensor) -> Tensor:
        """The frozen teacher's logits (B, L), float32."""
        return self.teacher(images).float()

    # --- setup ---------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the label count (and names) against the DataModule; take its names."""
        expected: dict[str, Any] = {"num_attributes": self.hparams.num_labels}
        if self.label_names is not None:
            expected["attribute_names"] = self.label_names
        check_datamodule(self, expected)
        names = getattr(getattr(self.trainer, "datamodule", None), "attribute_names", None)
        if names is not None:
            self.label_names = list(names)

    def on_fit_start(self) -> None:
        if not self.teacher_loaded and not self.hparams.allow_untrained_teacher:
            raise ValueError(f"OLRSiamese.teacher holds random weights; {TEACHER_HINT}")

    def names(self) -> list[str]:
        """Label names (from the DataModule or the arguments), else ``label_<l>``."""
        return self.label_names or [f"label_{j}" for j in range(self.hparams.num_labels)]

    # --- steps ---------------------------------------------------------------------------------

    def losses_and_targets(
        self, logits_x: Tensor, logits_y: Tensor, e_x: Tensor, e_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per-pair losses (P,) and targets t (P, L) of pairs ``(x_i, y_i)``, given the teacher's
        logits (P, L) and the embeddings (P, L, k) of both sides."""
        hp = self.hparams
        target = pair_targets(logits_x, logits_y, hp.targets, hp.temperature)
        return pair_loss(e_x.float(), e_y.float(), target, reduction="none"), target

    def pair_step(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(per-pair loss (B,), target t (B, L), E_a, E_b)`` of one batch of occluded pairs."""
        image_a, image_b = batch["image_a"], batch["image_b"]
        e_a, e_b = self(image_a), self(image_b)
        losses, target = self.losses_and_targets(
            self.teacher_logits(image_a), self.teacher_logits(image_b), e_a, e_b
        )
        return losses, target, e_a, e_b

    def all_pairs_losses(self, batch: dict[str, Any]) -> Tensor:
        """Per-pair losses (P,) of every pair of distinct images among the batch's 2B images
        (3B with the self pairs' ``image_a2``)."""
        images = torch.cat([batch[view] for view in VIEWS if view in batch])
        logits, embeddings = self.teacher_logits(images), self(images)
        first, second = torch.triu_indices(len(images), len(images), offset=1, device=self.device)
        return self.losses_and_targets(
            logits[first], logits[second], embeddings[first], embeddings[second]
        )[0]

    def self_pair_losses(self, batch: dict[str, Any], e_a: Tensor) -> Tensor:
        """Per-pair losses (B,) of the self pairs ``(image_a, image_a2)``, given E of image_a."""
        image_a, image_a2 = batch["image_a"], batch["image_a2"]
        return self.losses_and_targets(
            self.teacher_logits(image_a), self.teacher_logits(image_a2), e_a, self(image_a2)
        )[0]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        size, self_pairs = batch["image_a"].shape[0], "image_a2" in batch
        selves = None
        if self.hparams.train_pairs == "all":
            others = self.all_pairs_losses(batch)
            if self_pairs:
                is_self = self_pair_mask(size, others.device)
                others, selves = others[~is_self], others[is_self]
        else:
            others, _, e_a, _ = self.pair_step(batch)
            if self_pairs:
                selves = self.self_pair_losses(batch, e_a)
        loss = others.mean()
        if selves is not None:
            weight = self.hparams.self_pair_weight
            loss = (1.0 - weight) * loss + weight * selves.mean()
        self.losses.log(
            self, {"train/loss": loss}, batch_size=size, on_step=True, on_epoch=True, prog_bar=True
        )
        return loss

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> None:
        losses, target, e_a, e_b = self.pair_step(batch)
        size = losses.shape[0]
        self.losses.log(self, {f"{stage}/loss": losses.mean()}, batch_size=size, prog_bar=True)
        self.baselines[stage].update(target)
        self.moments[stage].update(torch.cat([e_a, e_b]).float())

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")

    def _evaluation_epoch_end(self, stage: str) -> None:
        """Baseline, loss ratio and collapse monitor from the whole held-out set (all ranks)."""
        baseline_metric, moments = self.baselines[stage], self.moments[stage]
        if not baseline_metric.update_called:
            return
        loss = self.losses[f"{stage}/loss"].compute()
        baseline = baseline_metric.compute()
        pc1 = moments.compute()[:, 0]
        baseline_metric.reset()
        moments.reset()
        log_global(
            self,
            {
                f"{stage}/baseline_loss": baseline,
                f"{stage}/loss_ratio": loss / baseline,
                f"{stage}/pc1_ratio_max": pc1.max(),
                f"{stage}/pc1_ratio_mean": pc1.mean(),
            },
        )
        _, message = collapsed_labels(pc1, self.names(), self.hparams.collapse_threshold)
        if message is not None and not self.trainer.sanity_checking:
            rank_zero_warn(f"{stage} epoch {self.current_epoch}: {message}")

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Clean images -> ``{"embeddings", "image_id", "dataloader_idx"[, "attributes"]}``."""
        out: dict[str, Any] = {
            "embeddings": self(batch["image"]).float(),
            "image_id": [str(i) for i in batch["image_id"]],
            "dataloader_idx": dataloader_idx,
        }
        if "attributes" in batch:
            out["attributes"] = batch["attributes"]
        return out

    # --- optimisation --------------------------------------------------------------------------

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """Adam on the encoder only (the teacher is frozen), with ``cosine_decay`` stepped per
        batch."""
        optimizer = torch.optim.Adam(self.encoder.parameters(), lr=self.hparams.lr)
        if not self.hparams.cosine_decay:
            return optimizer
        return cosine_decay(optimizer, self.trainer)
