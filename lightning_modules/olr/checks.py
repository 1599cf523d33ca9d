"""Shape and value checks shared by the OLR analyses: embeddings (N, L, k) and labels (N, L)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_embeddings", "check_labels"]


def check_embeddings(embeddings: Tensor, name: str = "embeddings") -> None:
    """Raise ValueError unless ``embeddings`` is a floating (N, L, k) tensor with N >= 1."""
    if embeddings.ndim != 3 or not embeddings.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor of shape (N, L, k), got "
            f"{embeddings.dtype} {tuple(embeddings.shape)}"
        )
    if embeddings.shape[0] == 0:
        raise ValueError(f"{name} holds no images (N = 0)")


def check_labels(labels: Tensor, rows: int | None = None, columns: int | None = None) -> None:
    """Raise ValueError unless ``labels`` is (N, L) holding only 0 and 1 (N, L as given)."""
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (N, L), got {tuple(labels.shape)}")
    if rows is not None and labels.shape[0] != rows:
        raise ValueError(f"labels have {labels.shape[0]} rows but there are {rows} images")
    if columns is not None and labels.shape[1] != columns:
        raise ValueError(f"labels have {labels.shape[1]} columns but there are {columns} labels")
    if not ((labels == 0) | (labels == 1)).all():
        raise ValueError("labels must only hold 0 and 1")
