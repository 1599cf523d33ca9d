"""MinMaxCAM's feature analysis (thesis Sec. 5.4, Fig. 5.6): masked f against full-image f^o.

Duck-typed on the module's ``region_features(images, labels) -> (f, f^o)``: the pooled features of
the CAM-masked image and of the whole image
(``lightning_modules.minmaxcam.module.MinMaxCAM.region_features``). On the test split, gathered
from every rank under DDP in dataset order, it logs the dispersion of both sets
(``test/dispersion_f``, ``test/dispersion_fo`` and their ``_std``; CUB in the thesis: f 1.03 +-
0.34, f^o 1.47 +- 0.38) and a t-SNE of f (dots) and f^o (crosses) for a few
classes (``test/tsne_region_features``; the thesis shows CUB classes 64, 67 and 70).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from torch import Tensor

from callbacks.gather import gather_rows
from callbacks.global_log import log_global
from callbacks.panels import figure_to_image, log_images, new_figure


def dispersion(features: Tensor, labels: Tensor) -> tuple[float, float]:
    """Within-class spread of L2-normalized features (thesis Sec. 5.4, f vs f^o).

    Each feature is L2-normalized; its distance to its class mean is averaged within the class;
    returns the mean and standard deviation of those averages over the classes (CUB in the
    thesis: f 1.03 +- 0.34, f^o 1.47 +- 0.38).
    """
    unit = F.normalize(features.double(), dim=1)
    per_class = []
    for c in labels.unique():
        group = unit[labels == c]
        per_class.append((group - group.mean(0)).norm(dim=1).mean())
    spread = torch.stack(per_class)
    return float(spread.mean()), float(spread.std()) if len(spread) > 1 else 0.0


class LogRegionFeatures(Callback):
    """Dispersion of f and f^o over the test split, and their t-SNE for ``classes``.

    Args:
        classes: Class ids (0-based) drawn in the t-SNE; None takes the first three seen.
        seed: Seed of the t-SNE.
    """

    def __init__(self, classes: list[int] | None = None, seed: int = 0) -> None:
        self.classes, self.seed = classes, seed
        self.masked: list[torch.Tensor] = []
        self.full: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.results: dict[str, float] = {}

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not callable(getattr(pl_module, "region_features", None)):
            raise TypeError(
                f"LogRegionFeatures needs {type(pl_module).__name__}.region_features(images, "
                "labels) -> (masked, full) features"
            )
        self.masked, self.full, self.labels = [], [], []

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        masked, full = pl_module.region_features(batch["image"], batch["label"])
        self.masked.append(masked.float().cpu())
        self.full.append(full.float().cpu())
        self.labels.append(batch["label"].cpu())

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # every rank's test items, in dataset order: the numbers one process computes
        masked, full = gather_rows(torch.cat(self.masked)), gather_rows(torch.cat(self.full))
        labels = gather_rows(torch.cat(self.labels))
        self.results = {}
        for name, features in (("f", masked), ("fo", full)):
            mean, std = dispersion(features, labels)
            self.results[f"test/dispersion_{name}"] = mean
            self.results[f"test/dispersion_{name}_std"] = std
        log_global(pl_module, self.results)
        if trainer.is_global_zero:
            classes = self.classes or labels.unique()[:3].tolist()
            keep = torch.isin(labels, torch.tensor(classes))
            if int(keep.sum()) >= 4:
                figure = tsne_figure(masked[keep], full[keep], labels[keep], self.seed)
                log_images(trainer, "test/tsne_region_features", [figure])


def tsne_figure(masked: torch.Tensor, full: torch.Tensor, labels: torch.Tensor, seed: int):
    """One t-SNE of both sets: f as dots, f^o as crosses, one colour per class (Fig. 5.6)."""
    import matplotlib
    from sklearn.manifold import TSNE

    both = torch.cat([masked, full]).numpy()
    perplexity = min(30.0, (len(both) - 1) / 3)
    points = TSNE(2, random_state=seed, init="pca", perplexity=perplexity).fit_transform(both)
    fig = new_figure(5, 5)
    ax = fig.subplots()
    colours = matplotlib.colormaps["tab10"]
    n = len(masked)
    for i, c in enumerate(labels.unique().tolist()):
        rows = (labels == c).numpy()
        ax.scatter(*points[:n][rows].T, s=10, marker="o", color=colours(i), label=f"class {c}: f")
        ax.scatter(*points[n:][rows].T, s=18, marker="x", color=colours(i), label=f"class {c}: f°")
    ax.legend(fontsize=6)
    ax.set_title("t-SNE: masked f (dots) vs full-image f° (crosses)")
    return figure_to_image(fig)
