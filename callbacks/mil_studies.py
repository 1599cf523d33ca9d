"""Studies of MIL bag models (thesis ch. 7): instance order, instance clustering, t-SNE figures.

Duck-typed on the module's public methods: ``predict(bag, mask)`` (bag decisions),
``instance_embedding(images)`` (features of singleton sets) and, optionally,
``forward_states(bag)`` (forward-LSTM state after each instance). The DataModule must offer
``instances(split)`` -> (images, digits) (``datamodules.mnist_bags.MNISTBagsDataModule`` does).

- Order study (section 7.4.2): the test set is evaluated ``repeats`` times, each time with a
  fresh random permutation inside every bag; logs ``test/order_error`` (mean, percent) and
  ``test/order_error_std``.
- Clustering (Table 7.5): KMeans(k, n_init=10) on the singleton features of every distinct test
  image; the score is the mean over clusters of each cluster's majority fraction
  (``test/cluster_score``, percent), with the digit grouping of the task (``groups``).
- Figures: t-SNE of singleton features coloured by digit (Figs. 7.9/7.10) and of forward-LSTM
  trajectories of 20 test bags, red positive / blue negative (Fig. 7.8).
"""

from __future__ import annotations

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer

from callbacks.panels import figure_to_image, log_images, new_figure


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


def permute_bags(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Index (B, T) that shuffles each bag's valid (leading) positions and keeps padding last."""
    keys = torch.rand(mask.shape, generator=generator).to(mask.device)
    return torch.argsort(keys.masked_fill(~mask, 2.0), dim=1)


@torch.no_grad()
def order_study(model, loader, repeats: int = 100, seed: int = 0) -> tuple[float, float]:
    """Error (percent) over ``repeats`` random in-bag orders of the whole loader: (mean, std)."""
    generator = torch.Generator().manual_seed(seed)
    errors = []
    for _ in range(repeats):
        wrong = total = 0
        for batch in loader:
            bag, mask = batch["bag"].to(model.device), batch["bag_mask"].to(model.device)
            order = permute_bags(mask, generator)
            bag = torch.gather(bag, 1, order[(...,) + (None,) * (bag.dim() - 2)].expand_as(bag))
            wrong += (model.predict(bag, mask).cpu() != batch["bag_label"]).sum().item()
            total += len(mask)
        errors.append(100.0 * wrong / total)
    return float(np.mean(errors)), float(np.std(errors))


@torch.no_grad()
def embed(model, images: torch.Tensor, chunk: int = 512) -> np.ndarray:
    """``model.instance_embedding`` over ``images`` in chunks -> numpy (N, D)."""
    parts = [
        model.instance_embedding(images[i : i + chunk].to(model.device)).float().cpu()
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(parts).numpy()


class LogMILStudies(Callback):
    """Run the order / clustering studies and log t-SNE figures at the end of testing.

    Args:
        order_repeats: Re-shuffled passes over the test set (100 in the thesis; 0 = skip).
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
        self.order_repeats, self.cluster_k, self.tsne = order_repeats, cluster_k, tsne
        self.cluster_groups = cluster_groups or []
        self.max_points, self.seed = max_points, seed
        self.results: dict[str, float] = {}

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        if self.order_repeats > 0:
            mean, std = order_study(
                pl_module, datamodule.test_dataloader(), self.order_repeats, self.seed
            )
            self.results.update({"test/order_error": mean, "test/order_error_std": std})
        if self.cluster_k > 0 or self.tsne:
            images, digits = datamodule.instances("test")
            keep = torch.randperm(len(digits), generator=torch.Generator().manual_seed(self.seed))
            images, digits = (
                images[keep[: self.max_points]],
                digits[keep[: self.max_points]].numpy(),
            )
            features = embed(pl_module, images)
            if self.cluster_k > 0:
                classes = (
                    group_digits(digits, self.cluster_groups) if self.cluster_groups else digits
                )
                score = clustering_score(features, classes, self.cluster_k, self.seed)
                self.results["test/cluster_score"] = 100.0 * score
            if self.tsne:
                self._log_tsne(trainer, pl_module, features, digits)
        for key, value in self.results.items():
            pl_module.log(key, value, rank_zero_only=True)

    def _log_tsne(self, trainer, pl_module, features, digits) -> None:
        from sklearn.manifold import TSNE

        points = TSNE(2, random_state=self.seed, init="pca").fit_transform(features)
        fig = new_figure(5, 5)
        ax = fig.subplots()
        scatter = ax.scatter(points[:, 0], points[:, 1], c=digits, cmap="tab10", s=4)
        ax.legend(*scatter.legend_elements(), fontsize=6, title="digit")
        ax.set_title("t-SNE of singleton-set features")
        log_images(trainer, "test/tsne_instances", [figure_to_image(fig)])
        if hasattr(pl_module, "forward_states"):
            log_images(trainer, "test/tsne_trajectories", [self._trajectories(trainer, pl_module)])

    def _trajectories(self, trainer, pl_module):
        from sklearn.manifold import TSNE

        dataset = trainer.datamodule.splits["test"]
        items = [dataset[i] for i in range(min(20, len(dataset)))]
        states = [pl_module.forward_states(it["bag"].to(pl_module.device)).cpu() for it in items]
        points = TSNE(
            2, random_state=self.seed, init="pca", perplexity=min(30.0, sum(map(len, states)) - 1.0)
        ).fit_transform(torch.cat(states).numpy())
        fig = new_figure(5, 5)
        ax = fig.subplots()
        start = 0
        for item, state in zip(items, states, strict=True):
            path = points[start : start + len(state)]
            start += len(state)
            ax.plot(
                path[:, 0],
                path[:, 1],
                "-o",
                ms=2,
                lw=0.8,
                color="red" if item["bag_label"] > 0 else "blue",
            )
        ax.set_title("forward-LSTM trajectories (red positive)")
        return figure_to_image(fig)
