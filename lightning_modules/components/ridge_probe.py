"""Linear probes by closed-form ridge regression, their R^2, and the probe matrix.

The ``disentangle`` spec (section 9, "Probe matrix") asks how well each factor (pose, identity,
expression, style) is predicted linearly from each sub-vector of the embedding: a diagonal-dominant
matrix of R^2 values means the factors are disentangled. The probe is ridge regression with an
unpenalised bias, the estimator of ``sklearn.linear_model.Ridge(alpha, fit_intercept=True)``:

    W = argmin ||(Y - y_mean) - (X - x_mean) W||^2 + alpha ||W||^2,   b = y_mean - x_mean W

(means over the training rows), solved through the SVD of the centred X: with X_c = U S V^T,
W = V diag(s / (s^2 + alpha)) U^T Y_c. All arithmetic is float64. R^2 per target column is
``1 - SS_res / SS_tot`` on the test rows with SS_tot about the test mean, as
``sklearn.metrics.r2_score(..., multioutput="raw_values")``, including its convention for a
constant test column (1.0 if predicted exactly, else 0.0).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["probe_matrix", "ridge_fit", "ridge_r2"]


def ridge_fit(x: Tensor, y: Tensor, alpha: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Fit ``y ~ x @ weights + bias`` by ridge regression with an unpenalised bias.

    Args:
        x: (N, D) inputs, N >= 1.
        y: (N, T) targets, or (N,) for one target.
        alpha: Ridge penalty alpha >= 0 on the weights (not scaled by N, as in sklearn). With
            alpha = 0 this is the minimum-norm least-squares fit.

    Returns:
        ``(weights (D, T), bias (T,))`` in float64 (``(D,)`` and a scalar for a 1-D ``y``).
    """
    x64, y64 = _as_matrices(x, y, "training")
    weights, bias = _fit(x64, y64, alpha)
    if y.dim() == 1:
        return weights[:, 0], bias[0]
    return weights, bias


def ridge_r2(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, alpha: float = 1e-3
) -> Tensor:
    """R^2 on the test rows of a ridge probe fitted on the training rows, per target column.

    Args:
        x_train: (N, D) training inputs.
        y_train: (N, T) training targets, or (N,).
        x_test: (M, D) test inputs, M >= 2.
        y_test: (M, T) test targets, or (M,).
        alpha: Ridge penalty (``ridge_fit``).

    Returns:
        float64 (T,) ``1 - SS_res / SS_tot`` per column (1 is perfect, 0 is the test mean, below
        0 is worse than the test mean).
    """
    x_fit, y_fit = _as_matrices(x_train, y_train, "training")
    x_eval, y_eval = _as_matrices(x_test, y_test, "test")
    if x_eval.shape[1] != x_fit.shape[1] or y_eval.shape[1] != y_fit.shape[1]:
        raise ValueError(
            f"train and test disagree: x {tuple(x_train.shape)} vs {tuple(x_test.shape)}, "
            f"y {tuple(y_train.shape)} vs {tuple(y_test.shape)}"
        )
    if len(x_eval) < 2:
        raise ValueError(f"R^2 needs at least 2 test rows, got {len(x_eval)}")
    weights, bias = _fit(x_fit, y_fit, alpha)
    residual = ((y_eval - (x_eval @ weights + bias)) ** 2).sum(0)  # (T,)
    total = ((y_eval - y_eval.mean(0)) ** 2).sum(0)  # (T,)
    r2 = 1 - residual / total.where(total > 0, torch.ones_like(total))
    constant = total == 0  # sklearn's force_finite convention
    return torch.where(constant, (residual == 0).double(), r2)


def probe_matrix(
    features: dict[str, tuple[Tensor, Tensor]],
    factors: dict[str, tuple[Tensor, Tensor]],
    alpha: float = 1e-3,
) -> dict[str, dict[str, float]]:
    """Mean test R^2 of a ridge probe from each feature block to each factor.

    Args:
        features: name -> ``(train (N, D_f), test (M, D_f))``, e.g. the sub-vectors f_p, f_id,
            f_e, f_s.
        factors: name -> ``(train (N, T_k) or (N,), test (M, T_k) or (M,))``, e.g. pose angles
            (3 columns), identity parameters, (valence, arousal), style parameters; rows aligned
            with every feature's rows.
        alpha: Ridge penalty (``ridge_fit``).

    Returns:
        ``matrix[feature][factor]``: the mean over the factor's columns of the per-column R^2
        (``ridge_r2``), in the order of the given dicts.
    """
    if not features or not factors:
        raise ValueError(
            f"need at least one feature and one factor, got {len(features)} and {len(factors)}"
        )
    names, widths, train_columns, test_columns = [], [], [], []
    for name, (train, test) in factors.items():
        train_y, test_y = _columns(train), _columns(test)
        if train_y.shape[1] != test_y.shape[1]:
            raise ValueError(
                f"factor {name!r}: train has {train_y.shape[1]} columns, test {test_y.shape[1]}"
            )
        names.append(name)
        widths.append(train_y.shape[1])
        train_columns.append(train_y)
        test_columns.append(test_y)
    y_train, y_test = torch.cat(train_columns, 1), torch.cat(test_columns, 1)
    matrix = {}
    for feature, (x_train, x_test) in features.items():
        if len(x_train) != len(y_train) or len(x_test) != len(y_test):
            raise ValueError(
                f"feature {feature!r} has {len(x_train)} train / {len(x_test)} test rows, the "
                f"factors {len(y_train)} / {len(y_test)}"
            )
        # one fit for all factors: ridge treats every target column independently
        r2 = ridge_r2(x_train, y_train, x_test, y_test, alpha)
        matrix[feature] = {
            name: float(part.mean()) for name, part in zip(names, r2.split(widths), strict=True)
        }
    return matrix


def _fit(x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Ridge weights (D, T) and bias (T,) from float64 (N, D) and (N, T)."""
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    x_mean, y_mean = x.mean(0), y.mean(0)  # (D,), (T,)
    u, s, vh = torch.linalg.svd(x - x_mean, full_matrices=False)  # (N, K), (K,), (K, D)
    if alpha > 0:
        gain = s / (s**2 + alpha)
    else:  # pseudo-inverse: drop directions at the rounding level, as numpy.linalg.lstsq
        cutoff = max(x.shape) * torch.finfo(torch.float64).eps * (s.max() if len(s) else 0)
        gain = torch.where(s > cutoff, 1 / s.where(s > cutoff, torch.ones_like(s)), 0.0)
    weights = vh.T @ (gain[:, None] * (u.T @ (y - y_mean)))  # (D, T)
    return weights, y_mean - x_mean @ weights


def _as_matrices(x: Tensor, y: Tensor, which: str) -> tuple[Tensor, Tensor]:
    """float64 (N, D) and (N, T) from x and y, after checking shapes and values."""
    if x.dim() != 2:
        raise ValueError(f"{which} x must be (N, D), got shape {tuple(x.shape)}")
    y = _columns(y)
    if len(y) != len(x) or len(x) == 0:
        raise ValueError(
            f"{which} x and y need the same number of rows >= 1, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    x = x.detach().double()
    if not bool(torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError(f"{which} x and y must be finite, got NaN or inf")
    return x, y


def _columns(y: Tensor) -> Tensor:
    """float64 (N, T): a 1-D target as one column."""
    if y.dim() not in (1, 2):
        raise ValueError(f"targets must be (N,) or (N, T), got shape {tuple(y.shape)}")
    y = y.detach().double()
    return y[:, None] if y.dim() == 1 else y
