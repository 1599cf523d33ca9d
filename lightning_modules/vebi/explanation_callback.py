"""``LogVEBIExplanations``: VEBI explanation panels of any suite classifier, during its training.

The callback interprets the classifier a LightningModule trains (spec sections 3-5) and logs how
it explains a fixed set of validation images, so the panels can be compared across epochs:

1. x of ``train_images`` training images (a seeded subset, the same every time), read with the
   module in eval mode under ``no_grad`` (``responses``), with a progress bar on a terminal;
2. W of Eq. 3.1 on them (``interpretation``, pool "All", ``mu``); the lasso targets are the
   labels: class ids, or the multi-hot rows of a multi-label classifier (the face attributes);
3. the explanation of the first ``num_images`` validation images (``explanation.explain``): the
   top-``top_k`` (layer, filter) pairs of the explained class, a heatmap each, and the
   r-weighted map. The explained class is the top-scoring one (the predicted class, or the
   attribute of highest score), or each of ``classes`` (class or attribute indices);
4. one panel, a row per (image, class): the image, the K heatmaps titled with layer and filter
   and framed by type (green conv, pink FC, as the thesis's Fig. 3.1; a pooling layer's channels
   are conv filters, green too), and the combined map over the image. Logged as
   ``val/vebi_explanations`` through ``callbacks.panels.log_images`` (every logger that takes
   images, and a PNG under the run folder).

The classifier is found by ``classifier_view`` (a dotted ``net`` path and an optional ``head``
after a global average pooling): at setup, a missing path or a module type the heatmap walk
cannot invert fails with a message naming it (a ResNet: the spec allows it for x, not for
heatmaps). Everything runs on global rank zero only, with no collective, so under DDP the other
ranks go on; the module's train/eval flags are restored afterwards, nothing is back-propagated,
and the torch random state is forked, so training continues exactly as without the callback.

Example (``trainer.callbacks`` of an experiment YAML)::

    # MinMaxCAM VGG16 on CUB: the CAM classifier is backbone -> GAP -> fc
    - class_path: lightning_modules.vebi.explanation_callback.LogVEBIExplanations
      init_args: {net: backbone, head: fc, every_n_epochs: 10, num_images: 6}
    # The face-attribute classifier (with model_name: latentlab/vgg; a ResNet is refused)
    - class_path: lightning_modules.vebi.explanation_callback.LogVEBIExplanations
      init_args: {net: model, label_key: attributes, classes: [31, 20]}  # Smiling, Male
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from callbacks.base import evaluated_epoch, is_evaluation_epoch
from callbacks.panels import figure_to_image, image_normalization, log_images, new_figure
from lightning_modules.vebi.classifier_view import classifier_view
from lightning_modules.vebi.explanation import Explanation, explain
from lightning_modules.vebi.interpretation import fit_interpretation
from lightning_modules.vebi.responses import ResponseIndex, responses_of

__all__ = ["KIND_COLOURS", "LogVEBIExplanations", "VEBIPanel"]

#: Title and frame colour of a heatmap by layer kind (thesis Fig. 3.1: green conv, pink FC).
KIND_COLOURS = {"conv": "#2ca02c", "pool": "#2ca02c", "fc": "#e377c2"}
KEY = "val/vebi_explanations"


@dataclass(frozen=True)
class VEBIPanel:
    """What the latest panel showed (for inspection and tests).

    Attributes:
        images: (N, C, H, W) the explained validation images, as the classifier sees them.
        scores: (N, C) the classifier's scores of those images.
        labels: Their labels, (N,) class ids or (N, C) multi-hot rows.
        explanations: One ``Explanation`` of the N images per explained class list entry (one
            when the top-scoring class is explained).
        index: The layer table of x (``ResponseIndex.entry`` names the pairs).
        weights: (m, C) the fitted W.
        training_images: How many training images x and W were read from.
    """

    images: Tensor
    scores: Tensor
    labels: Tensor
    explanations: list[Explanation]
    index: ResponseIndex
    weights: Tensor
    training_images: int


class LogVEBIExplanations(Callback):
    """Logs VEBI explanation panels of the module's classifier (see the module docstring).

    Args:
        net: Dotted path of the classifier in the LightningModule (images -> scores), or of
            its trunk when ``head`` is given: ``net`` (VEBIClassifier), ``model``
            (FaceAttributeClassifier), ``backbone`` (MinMaxCAM, with ``head: fc``).
        head: Dotted path of the linear head after the trunk's global average pooling; None
            when ``net`` is the whole classifier.
        train_images: Training images read for x and the lasso (a seeded subset when the
            training set is larger).
        mu: The l1 bound of Eq. 3.1 (10 for every dataset in the paper).
        top_k: Heatmaps per explanation (the spec's K).
        include_pool: Add pooling outputs to x (spec decision 1).
        num_images: Validation images explained: the first of the validation set.
        classes: Class (or attribute) indices to explain on every image; None explains the
            top-scoring one.
        every_n_epochs: Draw after every n-th validation epoch of fit (the suite's epoch rule:
            and after the last); None: only at the end of fit.
        at_fit_end: Draw at the end of fit too (once, when the last validation did not).
        image_key: Batch key of the images.
        label_key: Batch key of the labels: class ids (B,) or multi-hot rows (B, C)
            (``attributes`` for the face-attribute data).
        batch_size: Images per forward pass while reading x and explaining.
        max_iter: Iteration cap of the lasso solver (the spec's 10,000).
        check_forward: Check at every drawing that the rebuilt classifier gives the module's
            ``forward`` scores on the explained images; turn it off for a module whose
            forward does not map images to the classifier's scores.
        mean: Per-channel mean the images were normalized with (to undo it for drawing);
            default ``trainer.datamodule.image_mean``; without either, each image is
            min-max scaled for drawing.
        std: Per-channel std, as ``mean``.
        class_names: Names of the classes or attributes; default
            ``trainer.datamodule.attribute_names`` or ``class_names``, else numbers.
        seed: Seed of the training subset.
        progress: Show a progress bar while reading x (tqdm, only on a terminal).

    ``last`` holds the latest ``VEBIPanel``.
    """

    def __init__(
        self,
        net: str = "net",
        head: str | None = None,
        train_images: int = 2000,
        mu: float = 10.0,
        top_k: int = 5,
        include_pool: bool = False,
        num_images: int = 8,
        classes: list[int] | None = None,
        every_n_epochs: int | None = 1,
        at_fit_end: bool = True,
        image_key: str = "image",
        label_key: str = "label",
        batch_size: int = 64,
        max_iter: int = 10_000,
        check_forward: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: list[str] | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("train_images", train_images), ("top_k", top_k),
                           ("num_images", num_images), ("batch_size", batch_size),
                           ("max_iter", max_iter)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{name}: {arg} must be >= 1, got {value}")
        if mu <= 0:
            raise ValueError(f"{name}: mu must be > 0, got {mu}")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"{name}: every_n_epochs must be >= 1 or None, got {every_n_epochs}")
        if every_n_epochs is None and not at_fit_end:
            raise ValueError(
                f"{name}: with every_n_epochs None and at_fit_end false it never draws"
            )
        if classes is not None and (not classes or min(classes) < 0):
            raise ValueError(f"{name}: classes must be non-empty indices >= 0, got {classes}")
        if (mean is None) != (std is None):
            raise ValueError(f"{name}: give both mean and std, or neither")
        self.net, self.head = net, head
        self.train_images, self.mu, self.top_k = train_images, mu, top_k
        self.include_pool, self.num_images = include_pool, num_images
        self.classes = None if classes is None else list(classes)
        self.every_n_epochs, self.at_fit_end = every_n_epochs, at_fit_end
        self.image_key, self.label_key = image_key, label_key
        self.batch_size, self.max_iter, self.check_forward = batch_size, max_iter, check_forward
        self.mean, self.std, self.class_names = mean, std, class_names
        self.seed, self.progress = seed, progress
        self.last: VEBIPanel | None = None
        self._drawn_at: int | None = None  # the global step of the latest panel

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Fail early (on every rank, no collective) when the classifier cannot be explained."""
        view = classifier_view(pl_module, self.net, self.head)
        ResponseIndex.of(view, self.include_pool)
        outputs = _num_outputs(view)
        if self.classes is not None and max(self.classes) >= outputs:
            raise ValueError(
                f"{type(self).__name__}: classes {self.classes} for a classifier with {outputs} "
                f"outputs ({self._describe()})"
            )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if self.every_n_epochs is not None and is_evaluation_epoch(trainer, self.every_n_epochs):
            self.draw(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at_fit_end and self._drawn_at != trainer.global_step:
            self.draw(trainer, pl_module)

    # ------------------------------------------------------------------ the work
    def draw(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Interpret, explain and log the panel; on global rank zero only (others return)."""
        self._drawn_at = trainer.global_step  # on every rank: fit end draws once, or not at all
        if not trainer.is_global_zero:
            return
        modes = {module: module.training for module in pl_module.modules()}
        device = pl_module.device
        forked = [device.index or 0] if device.type == "cuda" else []
        try:
            pl_module.eval()
            with torch.random.fork_rng(devices=forked), torch.no_grad():
                panel = self._interpret_and_explain(trainer, pl_module)
        finally:
            for module, training in modes.items():
                module.train(training)
        self.last = panel
        image = self._render(panel, trainer, evaluated_epoch(trainer))
        log_images(trainer, KEY, [image], [f"VEBI, epoch {evaluated_epoch(trainer)}"])

    def _interpret_and_explain(self, trainer: Trainer, pl_module: LightningModule) -> VEBIPanel:
        view = classifier_view(pl_module, self.net, self.head)
        index = ResponseIndex.of(view, self.include_pool)
        outputs, device = _num_outputs(view), pl_module.device
        x, targets = self._training_responses(trainer, view, index, device)
        _check_labels(targets, outputs, self.label_key)
        fit = fit_interpretation(
            x, targets, index, outputs, pool="all", mu=self.mu, device=device,
            max_iter=self.max_iter,
        )  # fmt: skip
        val = _dataset(trainer.val_dataloaders, "validation", self._describe())
        batches = list(self._loader(val, list(range(min(self.num_images, len(val))))))
        images = torch.cat([self._images(b) for b in batches]).to(device)
        scores = view(images)
        if self.check_forward:
            self._check_view(scores, pl_module, images)
        rows = [torch.full((len(images),), c) for c in self.classes or ()] or [None]  # None: top
        explanations = [
            _to_cpu(explain(view, index, fit.weights, images, classes, self.top_k))
            for classes in rows
        ]
        labels = torch.cat([self._labels(b) for b in batches])
        return VEBIPanel(
            images.cpu(), scores.float().cpu(), labels, explanations, index, fit.weights, len(x)
        )

    def _training_responses(
        self, trainer: Trainer, view: nn.Module, index: ResponseIndex, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """x (n, m) and the labels of the training subset: ``train_images`` of them, seeded."""
        train = _dataset(trainer.train_dataloader, "training", self._describe())
        order = torch.arange(len(train))
        if len(train) > self.train_images:
            generator = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(len(train), generator=generator)[: self.train_images].sort()[0]
        return responses_of(
            view, index, self._loader(train, order.tolist()), device, self._images, self._labels,
            progress=None if self.progress else False, desc="VEBI responses",
        )  # fmt: skip

    def _check_view(self, ours: Tensor, pl_module: LightningModule, images: Tensor) -> None:
        """The rebuilt classifier's scores ``ours`` must be the module's forward's."""
        theirs = pl_module(images)
        if not isinstance(theirs, Tensor) or theirs.shape != ours.shape:
            raise ValueError(
                f"{type(self).__name__}: {type(pl_module).__name__}.forward does not return the "
                f"{tuple(ours.shape)} scores of {self._describe()}; set check_forward: false if "
                "its forward is not the classifier"
            )
        scale = theirs.abs().max().clamp_min(1.0)
        if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(scale)):
            raise ValueError(
                f"{type(self).__name__}: {self._describe()} gives other scores than "
                f"{type(pl_module).__name__}.forward (max difference "
                f"{(ours - theirs).abs().max():.3g}): check net and head"
            )

    def _describe(self) -> str:
        return (
            self.net if self.head is None else f"{self.net} -> global average pool -> {self.head}"
        )

    def _loader(self, dataset: Dataset, indices: list[int]) -> DataLoader:
        return DataLoader(Subset(dataset, indices), batch_size=self.batch_size, shuffle=False)

    def _images(self, batch: Any) -> Tensor:
        return _field(batch, self.image_key, "image_key").float()

    def _labels(self, batch: Any) -> Tensor:
        return _field(batch, self.label_key, "label_key").cpu()

    # ------------------------------------------------------------------ drawing
    def _render(self, panel: VEBIPanel, trainer: Trainer, epoch: int):
        stats = image_normalization(trainer, self.mean, self.std)
        shown = _displayable(panel.images, stats)
        names = self._names(trainer, panel.weights.shape[1])
        rows = [(i, e) for i in range(len(shown)) for e in panel.explanations]
        columns = 2 + self.top_k
        height = 1.6 * len(rows) + 0.6
        fig = new_figure(1.5 * columns, height)
        axes = fig.subplots(len(rows), columns, squeeze=False)
        fig.subplots_adjust(wspace=0.1, hspace=0.5, top=1 - 0.7 / height, bottom=0.1 / height)
        colormap = matplotlib.colormaps["jet"]
        for r, (i, e) in enumerate(rows):
            image = shown[i].permute(1, 2, 0).numpy()
            cls = int(e.classes[i])
            label = panel.labels[i]
            truth = names[int(label)] if label.dim() == 0 else ("yes" if label[cls] else "no")
            title = f"#{i}: {names[cls]}\nscore {float(panel.scores[i, cls]):.2f}, true: {truth}"
            _cell(axes[r, 0], image, title, "black")
            for k in range(self.top_k):
                entry = int(e.pairs[i, k])
                if entry < 0:
                    _cell(axes[r, 1 + k], None, "(no pair)", "grey")
                    continue
                layer, q = panel.index.entry(entry)
                heat = e.heatmaps[i, k].numpy()
                title = f"{layer.source} q{q}\nr={float(e.relevance[i, k]):.2g}"
                _cell(axes[r, 1 + k], heat, title, KIND_COLOURS[layer.kind], cmap="inferno")
            overlay = 0.5 * image + 0.5 * colormap(e.combined[i].numpy())[..., :3]
            _cell(axes[r, -1], overlay, "combined", "black")
        title = f"VEBI explanations, epoch {epoch} (mu={self.mu:g}, K={self.top_k}, "
        fig.suptitle(title + f"{panel.training_images} training images)", y=1 - 0.1 / height)
        return figure_to_image(fig)

    def _names(self, trainer: Trainer, count: int) -> list[str]:
        datamodule = getattr(trainer, "datamodule", None)
        for names in (self.class_names, getattr(datamodule, "attribute_names", None),
                      getattr(datamodule, "class_names", None)):  # fmt: skip
            if names is not None and len(names) == count:
                return [str(n) for n in names]
        return [f"class {c}" for c in range(count)]


def _num_outputs(view: nn.Module) -> int:
    linear = [m for m in view.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError("the classifier has no Linear class layer to explain")
    return linear[-1].out_features


def _dataset(loaders: Any, what: str, net: str) -> Dataset:
    """The dataset of the (first) ``what`` loader Lightning holds."""
    if isinstance(loaders, Sequence) and not isinstance(loaders, DataLoader):
        loaders = loaders[0] if loaders else None
    if isinstance(loaders, Mapping):
        loaders = next(iter(loaders.values()), None)
    dataset = getattr(loaders, "dataset", None)
    if dataset is None:
        raise ValueError(
            f"LogVEBIExplanations ({net}) needs the {what} DataLoader of the fit, found none"
        )
    return dataset


def _field(batch: Any, key: str, arg: str) -> Tensor:
    if not isinstance(batch, Mapping) or key not in batch:
        found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(
            f"LogVEBIExplanations reads batch[{key!r}] ({arg}), but the batches hold {found}"
        )
    return torch.as_tensor(batch[key])


def _check_labels(labels: Tensor, outputs: int, key: str) -> None:
    if labels.dim() == 2 and labels.shape[1] != outputs:
        raise ValueError(
            f"multi-hot labels {key!r} have {labels.shape[1]} columns, the classifier {outputs}"
        )
    if labels.dim() == 1 and (labels.min() < 0 or labels.max() >= outputs):
        raise ValueError(f"labels {key!r} are not class ids of the {outputs} classes")
    if labels.dim() not in (1, 2):
        raise ValueError(f"labels {key!r} must be (N,) ids or (N, C) multi-hot rows")


def _to_cpu(e: Explanation) -> Explanation:
    parts = (e.classes, e.pairs, e.relevance, e.heatmaps, e.combined)
    return Explanation(*(t.float().cpu() if t.is_floating_point() else t.cpu() for t in parts))


def _displayable(images: Tensor, stats: tuple[Tensor, Tensor] | None) -> Tensor:
    """(N, 3, H, W) in [0, 1]: normalization undone, else min-max scaled per image."""
    images = images.float()
    if stats is not None:
        mean, std = stats
        images = images * std + mean
    else:
        low = images.flatten(1).amin(1).view(-1, 1, 1, 1)
        high = images.flatten(1).amax(1).view(-1, 1, 1, 1)
        images = (images - low) / (high - low).clamp_min(1e-12)
    return images.clamp(0, 1).expand(-1, 3, -1, -1)


def _cell(ax, image, title: str, colour: str, cmap: str | None = None) -> None:
    """One panel cell: the image (or blank), its title and frame in ``colour``."""
    if image is not None:
        ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=6, color=colour)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2.5 if colour in KIND_COLOURS.values() else 0.8)
