"""Test oracle for VEBI's mu-lasso (Eq. 3.1): scikit-learn's LARS-lasso path cut at ||w||_1 = mu.

``lars_path(A, b, method="lasso")`` traces the penalised lasso, argmin 1/(2n) ||b - A w||^2 +
alpha ||w||_1, from alpha_max (w = 0) down to alpha = 0. The 1/(2n) scaling only relabels alpha;
the path of solutions is the same for any scaling, and along it ||w||_1 grows monotonically while
every coefficient is linear between breakpoints (LARS puts a breakpoint wherever a coefficient
enters or leaves, so none changes sign inside a segment). Hence ||w||_1 is piecewise linear too,
and the constrained solution of ||w||_1 <= mu is found by interpolating the two breakpoints
around mu linearly, in the coefficients, at the fraction where their l1 norms reach mu. When mu is
at least the l1 norm of the path's end, the constraint is inactive: the answer is the
least-squares solution (numpy's ``lstsq``) when A has full column rank, else the path's end (a
zero-residual point).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import lars_path


def lars_mu_lasso(A: np.ndarray, b: np.ndarray, mu: float) -> np.ndarray:
    """argmin ||A w - b||^2 s.t. ||w||_1 <= mu, (m,) float64, for A (n, m) and b (n,)."""
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _, _, coefs = lars_path(A, b, method="lasso", max_iter=20 * A.shape[1])
    norms = np.abs(coefs).sum(0)  # non-decreasing along the path
    if mu >= norms[-1]:
        if np.linalg.matrix_rank(A) == A.shape[1]:
            return np.linalg.lstsq(A, b, rcond=None)[0]
        return coefs[:, -1]
    k = int(np.searchsorted(norms, mu, side="right"))  # norms[k - 1] <= mu < norms[k]
    t = (mu - norms[k - 1]) / (norms[k] - norms[k - 1])
    return coefs[:, k - 1] + t * (coefs[:, k] - coefs[:, k - 1])


def objective(A: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    """||A w - b||^2 in float64."""
    r = np.asarray(A, dtype=np.float64) @ w - np.asarray(b, dtype=np.float64)
    return float(r @ r)
