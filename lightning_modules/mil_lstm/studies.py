"""Studies of a trained MIL model (thesis ch. 7): instance order, instance clustering, t-SNE.

``LogMILStudies`` is a test-stage evaluation callback (``callbacks.base.EvaluationCallback``) on
``MILModule``'s public methods ``predict(bag, mask)``, ``instance_embedding(images)`` and
``forward_states(bag)``. It works on the test batches as the test loop delivers them (it never
runs a dataloader of its own) plus the DataModule's ``instances("test")`` -> (images, digits)
(``datamodules.mnist_bags.MNISTBagsDataModule`` offers it):

- Order study (section 7.4.2): every test batch is predicted again ``repeats`` times, each time
  with a random permutation inside every bag, drawn from the study's seed and the bag's dataset
  index (the batch's ``index``), so every bag gets the same orders whatever the batching and the
  number of processes; the error over the test set of each repeat gives ``test/order_error``
  (mean over repeats, percent) and ``test/order_error_std``. Counts are summed over processes.
- Clustering (Table 7.5): KMeans(k, n_init=10) on the singleton features of distinct test images;
  the score is the mean over clusters of each cluster's majority fraction
  (``test/cluster_score``, percent), with the digit grouping of the task (``groups``).
- Figures: t-SNE of singleton features coloured by digit (Figs. 7.9/7.10) and of the
  forward-LSTM trajectories of the first 20 test bags, red positive / blue negative (Fig. 7.8;
  only for a pooling with ``forward_states``). Under DDP the trajectories are gathered from all
  ranks in dataset order, the instance studies run on rank zero (they read the whole
  ``instances("test")``) and their score is sent to every rank, so every rank logs the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning import LightningModule, Trainer
from torchmetrics import Metric

from callbacks.base import EvaluationCallback
from callbacks.gather import gather_items
from callbacks.global_log import log_global
from callbacks.panels import figure_to_image, log_images, new_figure

TRAJECTORY_BAGS = 20


def mean_cluster_purity(assignments: np.ndarray, labels: np.ndarray) -> float:
    """Mean over (non-empty) clusters of the fraction of the cluster's majority label."""
    purities = []
    for cluster in np.unique(assignments):
        members = labels[assignments == cluster]
        purities.append(np.bincount(members).max() / len(members))
    return float(np.mean(purities))


def clustering_score(features: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> float:
    """KMeans(k, n_init=10, random_state=seed) on ``features``; mean per-cluster purity."""
    from sklearn.cluster import KMeans

    assignments = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features)
    return mean_cluster_purity(assignments, labels)


def group_digits(digits: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Map digits to group ids: digit in ``groups[g]`` -> g, any other digit -> len(groups)."""
    out = np.full(len(digits), len(groups))
    for g, members in enumerate(groups):
        out[np.isin(digits, members)] = g
    return out


def bag_orders(mask: torch.Tensor, indices: torch.Tensor, repeats: int, seed: int) -> torch.Tensor:
    """``repeats`` in-bag orders of each bag of a padded batch: an index (repeats, B, T).

    Each bag's valid (leading) positions are permuted, padding stays last. The permutations of a
    bag come from a generator seeded by ``seed`` and the bag's dataset index (``indices``), so a
    bag gets the same orders in whichever batch, and on whichever DDP process, it is evaluated.
    """
    longest = mask.shape[1]
    order = torch.arange(longest).repeat(repeats, len(mask), 1)
    for b, (index, length) in enumerate(zip(indices.tolist(), mask.sum(1).tolist(), strict=True)):
        generator = torch.Generator().manual_seed((seed << 32) + int(index))
        for r in range(repeats):
            order[r, b, :length] = torch.randperm(length, generator=generator)
    return order.to(mask.device)


@torch.no_grad()
def permuted_mistakes(
    model, batch: dict[str, torch.Tensor], repeats: int, seed: int
) -> torch.Tensor:
    """Wrong bag decisions (repeats,) on ``batch`` under ``repeats`` random in-bag orders
    (``bag_orders`` of the batch's ``index``: each bag's dataset index)."""
    bag, mask = batch["bag"], batch["bag_mask"]
    orders = bag_orders(mask, batch["index"], repeats, seed)
    wrong = torch.zeros(repeats, dtype=torch.long)
    for r, order in enumerate(orders):
        shuffled = torch.gather(bag, 1, order[(...,) + (None,) * (bag.dim() - 2)].expand_as(bag))
        wrong[r] = (model.predict(shuffled, mask) != batch["bag_label"]).sum().cpu()
    return wrong


def order_errors(wrong: torch.Tensor, total: int) -> tuple[float, float]:
    """Error (percent) of each repeat from its mistake count: (mean, population std)."""
    errors = 100.0 * wrong.double().cpu().numpy() / total
    return float(np.mean(errors)), float(np.std(errors))


@torch.no_grad()
def embed(model, images: torch.Tensor, chunk: int = 512) -> np.ndarray:
    """``model.instance_embedding`` over ``images`` in chunks -> numpy (N, D)."""
    parts = [
        model.instance_embedding(images[i : i + chunk].to(model.device)).float().cpu()
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(parts).numpy()


class _OrderCounts(Metric):
    """Mistakes per repeat and bags seen, summed over batches and processes."""

    full_state_update = False

    def __init__(self, repeats: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("wrong", torch.zeros(repeats, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, wrong: torch.Tensor, bags: int) -> None:
        self.wrong += wrong.to(self.wrong.device)
        self.total += bags

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.wrong, self.total


class LogMILStudies(EvaluationCallback):
    """Order and clustering studies and t-SNE figures of the tested MIL model.

    Args:
        order_repeats: Re-shuffled predictions of each test batch (100 in the thesis; 0 = skip).
        cluster_k: k of KMeans (2 single, 3 multiple, 2 counting, 10 outlier; 0 = skip).
        cluster_groups: Digit groups defining the classes for purity ([[9]] -> 9 vs rest;
            [] -> the ten digits).
        tsne: Log the t-SNE figures.
        max_points: Instances drawn (seeded) for clustering and t-SNE.
        seed: Seed of the permutations, KMeans and t-SNE.
    """

    def __init__(
        self,
        order_repeats: int = 100,
        cluster_k: int = 0,
        cluster_groups: list[list[int]] | None = None,
        tsne: bool = True,
        max_points: int = 2000,
        seed: int = 0,
    ) -> None:
        super().__init__(stages=["test"])
        self.order_repeats, self.cluster_k, self.tsne = order_repeats, cluster_k, tsne
        self.cluster_groups = cluster_groups or []
        self.max_points, self.seed = max_points, seed
        self._trajectories: list[tuple[torch.Tensor, float]] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        needs = ["predict"] + (["instance_embedding"] if self.cluster_k > 0 or self.tsne else [])
        missing = [f"{type(pl_module).__name__}.{n}" for n in needs if not hasattr(pl_module, n)]
        if (self.cluster_k > 0 or self.tsne) and not hasattr(trainer.datamodule, "instances"):
            missing.append(f"{type(trainer.datamodule).__name__}.instances")
        if missing:
            raise ValueError(f"LogMILStudies needs {missing} (see lightning_modules/mil_lstm)")

    def make_metrics(self, stage: str) -> _OrderCounts:
        self._trajectories = []
        return _OrderCounts(max(self.order_repeats, 1))

    def update(self, metrics, outputs, batch, pl_module: LightningModule) -> None:
        if self.order_repeats > 0:
            if "index" not in batch:
                raise KeyError(
                    "LogMILStudies' order study needs each bag's dataset index in the batch "
                    "('index', as datamodules.mnist_bags.collate_bags gives it)"
                )
            wrong = permuted_mistakes(pl_module, batch, self.order_repeats, self.seed)
            metrics.update(wrong, len(batch["bag_mask"]))
        if self.tsne:
            self._keep_trajectories(batch, pl_module)

    def report(self, stage: str, metrics, trainer: Trainer, pl_module: LightningModule) -> None:
        results = {}
        if self.order_repeats > 0:
            wrong, total = metrics.compute()  # summed over ranks
            mean, std = order_errors(wrong, int(total))
            results.update({"test/order_error": mean, "test/order_error_std": std})
        # the first test bags of all ranks, in dataset order (every rank joins the gather)
        self._trajectories = gather_items(self._trajectories)[:TRAJECTORY_BAGS]
        clustering = {}
        if trainer.is_global_zero and (self.cluster_k > 0 or self.tsne):
            clustering = self._instance_studies(trainer, pl_module)
        results.update(trainer.strategy.broadcast(clustering, src=0))
        log_global(pl_module, results)

    def _instance_studies(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """Clustering score and t-SNE figures of the test instances (the whole set; rank zero)."""
        images, digits = trainer.datamodule.instances("test")
        keep = torch.randperm(len(digits), generator=torch.Generator().manual_seed(self.seed))
        images, digits = images[keep[: self.max_points]], digits[keep[: self.max_points]].numpy()
        features = embed(pl_module, images)
        results = {}
        if self.cluster_k > 0:
            classes = group_digits(digits, self.cluster_groups) if self.cluster_groups else digits
            score = clustering_score(features, classes, self.cluster_k, self.seed)
            results["test/cluster_score"] = 100.0 * score
        if self.tsne:
            self._log_tsne(trainer, features, digits)
        return results

    def _keep_trajectories(self, batch, pl_module) -> None:
        """Forward-LSTM states of the first ``TRAJECTORY_BAGS`` test bags (none without LSTM)."""
        bags = zip(batch["bag"], batch["bag_mask"], batch["bag_label"], strict=True)
        for bag, mask, label in bags:
            if len(self._trajectories) >= TRAJECTORY_BAGS:
                return
            states = pl_module.forward_states(bag[mask])
            if states is None:
                return
            self._trajectories.append((states.float().cpu(), float(label)))

    def _log_tsne(self, trainer, features, digits) -> None:
        from sklearn.manifold import TSNE

        points = TSNE(2, random_state=self.seed, init="pca").fit_transform(features)
        fig = new_figure(5, 5)
        ax = fig.subplots()
        scatter = ax.scatter(points[:, 0], points[:, 1], c=digits, cmap="tab10", s=4)
        ax.legend(*scatter.legend_elements(), fontsize=6, title="digit")
        ax.set_title("t-SNE of singleton-set features")
        log_images(trainer, "test/tsne_instances", [figure_to_image(fig)])
        if self._trajectories:
            log_images(trainer, "test/tsne_trajectories", [self._trajectory_figure()])

    def _trajectory_figure(self):
        from sklearn.manifold import TSNE

        states = [s for s, _ in self._trajectories]
        points = TSNE(
            2, random_state=self.seed, init="pca", perplexity=min(30.0, sum(map(len, states)) - 1.0)
        ).fit_transform(torch.cat(states).numpy())
        fig = new_figure(5, 5)
        ax = fig.subplots()
        start = 0
        for state, label in self._trajectories:
            path = points[start : start + len(state)]
            start += len(state)
            color = "red" if label > 0 else "blue"
            ax.plot(path[:, 0], path[:, 1], "-o", ms=2, lw=0.8, color=color)
        ax.set_title("forward-LSTM trajectories (red positive)")
        return figure_to_image(fig)
