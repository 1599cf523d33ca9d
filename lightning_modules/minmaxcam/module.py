"""MinMaxCAM: CAM with common- and full-region regularization (Wang, Oramas, Tuytelaars, BMVC 2021).

Thesis chapter 5; spec ``shared/specs/minmaxcam.md``. Reproduced by ``experiments/minmaxcam/*.yaml``
(Table 5.1 rows on CUB; sweeps in ``experiments/sweeps/minmaxcam_*.yaml`` for Fig. 5.7 and
Table 5.4). A CAM classifier (backbone B -> GAP -> ``fc``) trained on N x m class-set batches
(``datamodules.samplers.ClassSetSampler``) with two optimizer steps per batch:

- Stage I: cross-entropy (Eq. 5.4, mean over the batch) updates B and ``fc``.
- Stage II: B frozen and in eval mode; the CAM of the GT class, min-max normalized per image and
  upsampled bilinearly, masks the ImageNet-normalized input (H_m, kept differentiable w.r.t.
  ``fc.weight``); ``f = GAP(B(I * H_m))``, ``f^o = GAP(B(I))``.
  L_S2 = crr_weight * CRR + frr_weight * FRR (Eq. 5.2, 5.3, 5.5) updates ``fc.weight`` only.
- ``crr_weight = frr_weight = 0`` is the CAM baseline: Stage II is skipped, all else is equal.

Deviations / decisions (spec "Ambiguities"): losses use the MSE scale of the author's code
(``reduction="mean"``; ``"sum"`` is the thesis' squared-L2 scale) and CRR averages over the N class
groups; Stage II uses ``zero_grad(set_to_none=True)`` so momentum and weight decay never move B
(the author's PyTorch-1.x code did); ``mask_features`` is the Table 5.2 ablation (H_m masks the
feature maps instead of the input); ``stage_two_max_norm`` (off by default, not in [OFF]) clips the
L2 norm of fc.weight's Stage II gradient. H_m is invariant to the scale of fc.weight[c], so that
gradient is orthogonal to fc.weight[c] and grows as 1 / ||fc.weight[c]||; its norm has a heavy
tail whose steps can wreck the classifier (docs/results/minmaxcam.md).

``validation_step`` / ``test_step`` return (``callbacks.keys``) ``CAMS`` (B, h, w) of the GT
class at feature resolution, ``BOXES`` (and ``MASKS`` when the batch has ``mask``), ``LOGITS``
and the class indices ``LABEL``, for ``callbacks.wsol.callback.LogWSOLMetrics`` and
``callbacks.cam_overlay.LogCAMOverlay``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import Tensor, nn

from callbacks.keys import BOXES, CAMS, LABEL, LOGITS, MASKS
from lightning_modules.components.cams import minmax_normalize
from lightning_modules.components.data_checks import check_datamodule
from lightning_modules.components.epoch_means import EpochMeans
from lightning_modules.components.manual_ddp import broadcast_buffers, partial_backward
from lightning_modules.components.pretrained import initial_weights
from lightning_modules.minmaxcam.backbones import build_cam_backbone
from lightning_modules.minmaxcam.losses import common_region_loss, full_region_loss

__all__ = ["MinMaxCAM"]


class MinMaxCAM(LightningModule):
    """MinMaxCAM and its CAM baseline (``crr_weight = frr_weight = 0``).

    Args:
        backbone: ``vgg16``, ``resnet50``, ``mobilenet_v2``, ``mobilenet_v1`` (Table 5.3) or
            ``tiny`` (CPU tests).
        num_classes: C (200 for CUB).
        weights_file: ImageNet weights of the library backbone (torchvision, or timm for
            ``mobilenet_v1``): a key of the pretrained-file manifest (``components/
            pretrained.py``, e.g. ``resnet50``) or a path; None = random init (logged).
        random_init: Start from random weights even though ``weights_file`` names a file: the
            explicit opt-out of a paper configuration (logged as a warning).
        crr_weight: λ1, Eq. 5.5 (VGG16: 1; ResNet-50 / MobileNetV2: 10).
        frr_weight: λ2, Eq. 5.5 (VGG16: 10; ResNet-50 / MobileNetV2: 1).
        samples_per_class: m; batches must be ordered class by class in groups of m (checked
            against the DataModule's ``samples_per_class`` at setup, with ``num_classes``).
        lr: Learning rate of the backbone (1e-4); fc and VGG conv6 use ``head_lr_factor`` x lr.
        head_lr_factor: 10 ([OFF]).
        momentum: SGD momentum (0.9, Nesterov).
        weight_decay: 5e-4.
        milestones: MultiStepLR epochs ([50, 100]), gamma ``lr_gamma`` (0.1).
        lr_gamma: LR decay factor.
        reduction: ``mean`` (MSE scale, default) or ``sum`` (thesis scale) for CRR/FRR.
        mask_features: Table 5.2 ablation: mask the feature maps with H_m instead of the input.
        mask_eps: ε of the min-max normalization of H_m.
        width: Width of the ``tiny`` backbone.
        stage_two_max_norm: Clip the L2 norm of the Stage II gradient of fc.weight to this value
            (None: no clipping, as in [OFF]); the norm before clipping is logged as
            ``train/stage_two_grad_norm`` (loss-scaled under ``16-mixed``). Clipping is
            unsupported with ``16-mixed`` precision, whose loss scaling would make the threshold
            meaningless; use ``bf16-mixed`` or fp32.
    """

    evaluation_outputs = (CAMS, BOXES, MASKS, LOGITS, LABEL)

    def __init__(
        self,
        backbone: Literal["vgg16", "resnet50", "mobilenet_v2", "mobilenet_v1", "tiny"] = "vgg16",
        num_classes: int = 200,
        weights_file: str | None = None,
        random_init: bool = False,
        crr_weight: float = 1.0,
        frr_weight: float = 10.0,
        samples_per_class: int = 5,
        lr: float = 1e-4,
        head_lr_factor: float = 10.0,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        milestones: tuple[int, ...] = (50, 100),
        lr_gamma: float = 0.1,
        reduction: Literal["mean", "sum"] = "mean",
        mask_features: bool = False,
        mask_eps: float = 1e-8,
        width: int = 16,
        stage_two_max_norm: float | None = None,
    ) -> None:
        super().__init__()
        if stage_two_max_norm is not None and stage_two_max_norm <= 0:
            raise ValueError(f"stage_two_max_norm must be positive or None: {stage_two_max_norm}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        weights = initial_weights(type(self).__name__, weights_file, random_init)
        self.backbone = build_cam_backbone(backbone, weights, width)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)
        train = ("loss_s1", "accuracy", "crr", "frr", "loss_s2", "stage_two_grad_norm")
        self.means = EpochMeans(
            [f"train/{name}" for name in train] + ["val/accuracy", "test/accuracy"]
        )

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> class logits (B, C)."""
        return self.fc(self.backbone(images).mean((2, 3)))

    def cam(self, features: Tensor, labels: Tensor) -> Tensor:
        """CAM (Eq. 5.1) of class ``labels`` from features (B, K, h, w) -> (B, h, w); no ReLU."""
        return torch.einsum("bkhw,bk->bhw", features, self.fc.weight[labels])

    @torch.no_grad()
    def cams(self, images: Tensor, labels: Tensor) -> Tensor:
        """Feature-resolution CAMs (B, h, w) of ``labels`` for (B, 3, H, W) images."""
        return self.cam(self.backbone(images), labels)

    @torch.no_grad()
    def region_features(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(f, f^o): GAP features of the CAM-masked and of the full images (for Fig. 5.6)."""
        features = self.backbone(images)
        mask = minmax_normalize(self.cam(features, labels), self.hparams.mask_eps)
        upsampled = F.interpolate(mask[:, None], size=images.shape[-2:], mode="bilinear")
        return self.backbone(images * upsampled).mean((2, 3)), features.mean((2, 3))

    def training_step(self, batch: dict, batch_idx: int) -> None:
        images, labels = batch["image"], batch["label"]
        opt = self.optimizers()
        logits = self(images)
        loss_s1 = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss_s1)
        opt.step()
        logs = {
            "train/loss_s1": loss_s1.detach(),
            "train/accuracy": (logits.argmax(1) == labels).float().mean(),
        }
        if self.hparams.crr_weight or self.hparams.frr_weight:
            logs.update(self._stage_two(images, labels, opt))
        self.means.log(
            self, logs, batch_size=len(labels), prog_bar=True, on_step=True, on_epoch=True
        )

    def _stage_two(self, images: Tensor, labels: Tensor, opt) -> dict[str, Tensor]:
        """Freeze B (eval, no grad), then update fc.weight on λ1·CRR + λ2·FRR."""
        m = self.hparams.samples_per_class
        grouped = labels.view(-1, m)
        if len(labels) % m or not (grouped == grouped[:, :1]).all():
            raise ValueError(
                f"Stage II needs batches ordered class by class in groups of m={m} "
                "(use datamodules.samplers.ClassSetSampler)"
            )
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        try:
            crr, frr = self._regularizers(images, labels)
            loss_s2 = self.hparams.crr_weight * crr + self.hparams.frr_weight * frr
            opt.zero_grad(set_to_none=True)
            # fc.weight alone: plain DDP would refuse a backward that skips the backbone
            partial_backward(self, loss_s2, [self.fc.weight])
            max_norm = self.hparams.stage_two_max_norm
            grad_norm = nn.utils.clip_grad_norm_(self.fc.weight, max_norm or float("inf"))
            opt.step()
        finally:
            self.backbone.requires_grad_(True)
            self.backbone.train()
        return {
            "train/crr": crr.detach(),
            "train/frr": frr.detach(),
            "train/loss_s2": loss_s2.detach(),
            "train/stage_two_grad_norm": grad_norm.detach(),  # before clipping
        }

    def _regularizers(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(CRR, FRR) of the masked features; the gradient reaches fc.weight through H_m."""
        with torch.no_grad():
            features = self.backbone(images)  # F = B*(I), after the Stage I step
        full = features.mean((2, 3))  # f^o, no gradient
        mask = minmax_normalize(self.cam(features, labels), self.hparams.mask_eps)  # (B, h, w)
        if self.hparams.mask_features:
            masked = (features * mask[:, None]).mean((2, 3))
        else:
            upsampled = F.interpolate(
                mask[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
            )
            masked = self.backbone(images * upsampled).mean((2, 3))
        reduction = self.hparams.reduction
        crr = common_region_loss(masked, self.hparams.samples_per_class, reduction)
        return crr, full_region_loss(masked, full, reduction)

    def setup(self, stage: str) -> None:
        """Check the DataModule: its ``num_classes``, and its ``samples_per_class`` when Stage II
        runs (Stage II groups the rows of a batch by m)."""
        expected = {"num_classes": self.hparams.num_classes}
        if self.hparams.crr_weight or self.hparams.frr_weight:
            expected["samples_per_class"] = self.hparams.samples_per_class
        check_datamodule(self, expected)

    def on_fit_start(self) -> None:
        precision = self.trainer.precision
        if self.hparams.stage_two_max_norm is not None and precision in ("16-mixed", "16"):
            raise ValueError(
                f"stage_two_max_norm needs fp32 or bf16-mixed precision, got {precision!r}: "
                "under 16-mixed the gradient is still loss-scaled when it would be clipped"
            )

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: dict, stage: str) -> dict[str, Tensor]:
        images, labels = batch["image"], batch["label"]
        features = self.backbone(images)
        logits = self.fc(features.mean((2, 3)))
        accuracy = (logits.argmax(1) == labels).float().mean()
        self.means.log(self, {f"{stage}/accuracy": accuracy}, batch_size=len(labels))
        out = {CAMS: self.cam(features, labels).float(), LOGITS: logits, LABEL: labels}
        if "boxes" in batch:
            out[BOXES] = batch["boxes"]
        if "mask" in batch:
            out[MASKS] = batch["mask"]
        return out

    def on_validation_epoch_start(self) -> None:
        broadcast_buffers(self)  # under DDP every process evaluates the checkpoint's statistics

    def on_test_epoch_start(self) -> None:
        broadcast_buffers(self)

    def on_predict_epoch_start(self) -> None:
        broadcast_buffers(self)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()

    def configure_optimizers(self):
        head = list(self.fc.parameters())
        if self.hparams.backbone == "vgg16":
            head += list(self.backbone.conv6.parameters())
        head_ids = {id(p) for p in head}
        body = [p for p in self.parameters() if id(p) not in head_ids]
        lr = self.hparams.lr
        optimizer = torch.optim.SGD(
            [{"params": body, "lr": lr}, {"params": head, "lr": lr * self.hparams.head_lr_factor}],
            lr=lr,
            momentum=self.hparams.momentum,
            weight_decay=self.hparams.weight_decay,
            nesterov=self.hparams.momentum > 0,
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, list(self.hparams.milestones), gamma=self.hparams.lr_gamma
        )
        return [optimizer], [scheduler]
