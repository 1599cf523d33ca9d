"""The mu-lasso of Eq. 3.1, solved by spectral projected gradient, all classes at once.

Eq. 3.1 reads W* = argmin_W ||X^T W - L^T||_F^2 s.t. ||w_c||_1 <= mu for every class c. With
A = X^T (n images x m filter responses) and B = L^T (n x C multi-hot labels) it splits into C
problems min_w ||A w - b_c||^2 s.t. ||w||_1 <= mu, solved here side by side as the columns of one
(m, C) matrix. As printed (spec section 8, decision 2): no intercept, no centring or scaling.

The solver is the spec's spectral projected gradient (the method of the paper's refs 123 / 163,
SPGL1), per column c, in float64 on A's device:

- W_0 = 0; gradient G = 2 A^T (A W - B); direction D = P_mu(W - alpha G) - W (``l1_ball``);
- non-monotone Armijo backtracking: the first lambda in 1, 1/2, 1/4, ... with
  f_c(W + lambda D) <= max(last ``history`` f_c) + 1e-4 lambda <G_c, D_c>; then W <- W + lambda D;
- Barzilai-Borwein step alpha = s^T s / s^T y (s, y: the changes of w_c and g_c), clipped to
  [1e-10, 1e10], and 1e10 when s^T y <= 0;
- stop when the duality gap of the 1/2-scaled problem, ||r||^2 - b^T r + mu ||A^T r||_inf with
  r = b - A w, is below tol * max(1, 1/2 ||r||^2), or after ``max_iter`` steps.

A converged column stops changing and leaves the batch; the others go on. Decisions where the
spec is silent: the first step is alpha_0 = 1 / ||P_mu(-G_0)||_inf clipped as above (SPGL1's
choice); f along D is the exact quadratic f + lambda <G, D> + lambda^2 ||A D||^2, so backtracking
costs no product; after 60 halvings without a decrease (only when rounding hides it) a column
stops with ``converged=False``.

Two exact forms of the same iteration, chosen by shape (``gram=None``):

- direct: keeps R = A W - B (n x C); two n m C products per step (A D and A^T R);
- Gram: precomputes A^T A (m x m) and A^T B once (n m^2) and keeps A^T A W; one m^2 C product
  per step. It is chosen when n m^2 + T m^2 C < 2 T n m C for a nominal T = 500 steps (the
  one-off product paid back by cheaper steps; the CUB-like problem of ``benchmarks/vebi_lasso.py``
  at a tenth of its size took 620 steps per column on average). At CUB's size (n = 5,994,
  m = 9,568, C = 200) that is the Gram form. Nothing n x C x m is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from lightning_modules.vebi.l1_ball import project_l1_ball

__all__ = ["LassoSolution", "duality_gap", "prefers_gram", "relevant_pairs", "solve_mu_lasso"]

ARMIJO = 1e-4  # sufficient-decrease constant
STEP_RANGE = (1e-10, 1e10)  # Barzilai-Borwein clip
HALVINGS = 60  # backtracking steps before a column is declared stalled
NOMINAL_STEPS = 500  # the T of the Gram-or-direct rule


@dataclass(frozen=True)
class LassoSolution:
    """The solver's result, one entry per column (class) c.

    Attributes:
        W: (m, C) float64 weights, ||w_c||_1 <= mu, exact zeros off the support.
        iterations: (C,) int64 steps taken by each column.
        gaps: (C,) float64 duality gap of the 1/2-scaled problem at the returned w_c.
        converged: (C,) bool, gap < tol * max(1, 1/2 ||r||^2); False after max_iter or a stall.
        objective: (C,) float64 ||A w_c - b_c||^2.
    """

    W: Tensor
    iterations: Tensor
    gaps: Tensor
    converged: Tensor
    objective: Tensor


def solve_mu_lasso(
    A: Tensor | np.ndarray,
    B: Tensor | np.ndarray,
    mu: float,
    *,
    max_iter: int = 10_000,
    tol: float = 1e-6,
    history: int = 10,
    progress: bool = False,
    gram: bool | None = None,
) -> LassoSolution:
    """Solve Eq. 3.1, min ||A W - B||_F^2 s.t. ||w_c||_1 <= mu for every column c.

    Args:
        A: (n, m) design, the images' response vectors as rows (X^T); tensor or array.
        B: (n, C) targets (L^T), or (n,) for one column; moved to A's device.
        mu: l1 radius, > 0 (the paper's mu = 10).
        max_iter: Most steps per column.
        tol: Relative duality-gap tolerance.
        history: Length of the non-monotone line search's memory (1 = monotone Armijo).
        progress: Show a tqdm bar of the steps.
        gram: Force the Gram (True) or direct (False) form; None chooses by shape.
    """
    A, B = _as_problem(A, B, mu, max_iter, tol, history)
    n, m = A.shape
    if gram is None:
        gram = prefers_gram(n, m, B.shape[1])
    form = _GramForm(A, B) if gram else _DirectForm(A, B)
    del A
    state = _Active.start(form, mu, B.shape[1], history)
    done = _Done(m, B.shape[1], B.device)
    with tqdm(total=max_iter, desc="mu-lasso", disable=not progress) as bar:
        for step in range(max_iter):
            state = done.retire(state, step, tol, mu, final=False)
            if state.size == 0:
                break
            state = _spg_step(form, state, mu, step % history)
            bar.update()
            bar.set_postfix(active=state.size)
        done.retire(state, max_iter, tol, mu, final=True)
    return done.solution()


def prefers_gram(n: int, m: int, columns: int) -> bool:
    """Whether the Gram form is cheaper for an (n, m) design and ``columns`` targets: its one-off
    n m^2 product plus NOMINAL_STEPS steps of m^2 C, against as many direct steps of 2 n m C."""
    return n * m + NOMINAL_STEPS * m * columns < 2 * NOMINAL_STEPS * n * columns


def duality_gap(A: Tensor, B: Tensor, W: Tensor, mu: float) -> Tensor:
    """The spec's gap per column, ||r||^2 - b^T r + mu ||A^T r||_inf with r = b - A w, as printed.

    It is the primal-dual gap of min 1/2 ||A w - b||^2 s.t. ||w||_1 <= mu at a feasible w (>= 0,
    zero exactly at the optimum). Float64; A (n, m), B (n, C), W (m, C) on one device.
    """
    A, B, W = A.double(), B.double(), W.double()
    r = B - A @ W
    return (r * r).sum(0) - (B * r).sum(0) + mu * (A.T @ r).abs().amax(0)


def relevant_pairs(W: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """The relevant (layer, filter) rows of each class, |W_jc| > eps, and their union ("All").

    Returns ``(per_class (m, C) bool, all (m,) bool)``.
    """
    per_class = W.abs() > eps
    return per_class, per_class.any(1)


def _as_problem(A, B, mu: float, max_iter: int, tol: float, history: int) -> tuple[Tensor, Tensor]:
    """A, B as float64 tensors on A's device, B as (n, C); every argument checked."""
    A = torch.as_tensor(A)
    B = torch.as_tensor(B, device=A.device)
    if A.dim() != 2:
        raise ValueError(f"A must be (n, m), got shape {tuple(A.shape)}")
    if B.dim() == 1:
        B = B.unsqueeze(1)
    if B.dim() != 2 or B.shape[0] != A.shape[0]:
        raise ValueError(f"B must be (n, C) or (n,) with n = {A.shape[0]}, got {tuple(B.shape)}")
    if not mu > 0 or not np.isfinite(mu):
        raise ValueError(f"mu must be a finite number > 0, got {mu}")
    if max_iter < 0 or not tol > 0 or history < 1:
        raise ValueError(
            f"need max_iter >= 0, tol > 0 and history >= 1, got {max_iter}, {tol}, {history}"
        )
    return A.double(), B.double()


class _DirectForm:
    """f and G from A itself: the image of W is R = A W - B (n x C)."""

    def __init__(self, A: Tensor, B: Tensor) -> None:
        self.A, self.B = A, B

    def start(self) -> Tensor:
        return -self.B

    def apply(self, D: Tensor) -> Tensor:
        return self.A @ D

    def gradient(self, image: Tensor) -> Tensor:
        return 2 * (self.A.T @ image)

    def objective(self, W: Tensor, image: Tensor, cols: Tensor) -> Tensor:
        return (image * image).sum(0)

    def curvature(self, D: Tensor, image_of_D: Tensor) -> Tensor:  # ||A D||^2
        return (image_of_D * image_of_D).sum(0)


class _GramForm:
    """f and G from H = A^T A, c = A^T B and ||b||^2: the image of W is H W - c (m x C)."""

    def __init__(self, A: Tensor, B: Tensor) -> None:
        self.H, self.c, self.bb = A.T @ A, A.T @ B, (B * B).sum(0)

    def start(self) -> Tensor:
        return -self.c

    def apply(self, D: Tensor) -> Tensor:
        return self.H @ D

    def gradient(self, image: Tensor) -> Tensor:
        return 2 * image

    def objective(self, W: Tensor, image: Tensor, cols: Tensor) -> Tensor:
        # ||A w - b||^2 = w^T (H w - c) - w^T c + b^T b
        return (W * (image - self.c[:, cols])).sum(0) + self.bb[cols]

    def curvature(self, D: Tensor, image_of_D: Tensor) -> Tensor:  # D^T H D = ||A D||^2
        return (D * image_of_D).sum(0)


@dataclass
class _Active:
    """The columns still iterating, with their original indices ``cols``."""

    cols: Tensor  # (k,)
    W: Tensor  # (m, k)
    image: Tensor  # (n, k) or (m, k): the form's linear image of W
    G: Tensor  # (m, k)
    f: Tensor  # (k,) ||A w - b||^2
    recent: Tensor  # (history, k) the last f values
    alpha: Tensor  # (k,) spectral step
    stalled: Tensor  # (k,) bool: the last line search found no decrease

    @classmethod
    def start(cls, form, mu: float, columns: int, history: int) -> _Active:
        image = form.start()
        cols = torch.arange(columns, device=image.device)
        G = form.gradient(image)
        W = torch.zeros_like(G)
        f = form.objective(W, image, cols)
        first = project_l1_ball(-G, mu).abs().amax(0)  # ||P(W - G) - W||_inf at W = 0
        alpha = (1 / first.clamp_min(1e-300)).clamp(*STEP_RANGE)
        recent = f.expand(history, -1).clone()
        return cls(cols, W, image, G, f, recent, alpha, torch.zeros_like(cols, dtype=torch.bool))

    @property
    def size(self) -> int:
        return self.cols.numel()

    def keep(self, mask: Tensor) -> _Active:
        """The columns where ``mask`` holds (every field has the columns last)."""
        return _Active(*(getattr(self, f.name)[..., mask] for f in fields(self)))


def _gap(state: _Active, mu: float) -> Tensor:
    """``duality_gap`` from the gradient: A^T r = -G / 2 and ||r||^2 - b^T r = -w^T A^T r."""
    return 0.5 * (state.W * state.G).sum(0) + 0.5 * mu * state.G.abs().amax(0)


def _spg_step(form, state: _Active, mu: float, slot: int) -> _Active:
    """One projected step with non-monotone backtracking and the next spectral step length."""
    D = project_l1_ball(state.W - state.alpha * state.G, mu) - state.W
    image_of_D = form.apply(D)
    slope, curvature = (state.G * D).sum(0), form.curvature(D, image_of_D)
    lam = _backtrack(state.f, state.recent.amax(0), slope, curvature)
    W, image = state.W + lam * D, state.image + lam * image_of_D
    G = form.gradient(image)
    s, y = lam * D, G - state.G
    sts, sty = (s * s).sum(0), (s * y).sum(0)
    alpha = torch.where(sty > 0, (sts / sty).clamp(*STEP_RANGE), STEP_RANGE[1])
    f = form.objective(W, image, state.cols)
    recent = state.recent.clone()
    recent[slot] = f
    return _Active(state.cols, W, image, G, f, recent, alpha, lam == 0)


def _backtrack(f: Tensor, reference: Tensor, slope: Tensor, curvature: Tensor) -> Tensor:
    """The first lambda = 2^-k accepted by the non-monotone Armijo rule, 0 where none is.

    f(W + lambda D) = f + lambda slope + lambda^2 curvature exactly (f is quadratic).
    """
    lam = 0.5 ** torch.arange(HALVINGS, dtype=f.dtype, device=f.device).unsqueeze(1)
    trial = f + lam * slope + lam**2 * curvature
    accepted = trial <= reference + ARMIJO * lam * slope
    first = lam.squeeze(1)[accepted.int().argmax(0)]
    return torch.where(accepted.any(0), first, 0.0)


class _Done:
    """The finished columns' results, written in place as columns leave the batch."""

    def __init__(self, m: int, columns: int, device: torch.device) -> None:
        kw = {"dtype": torch.float64, "device": device}
        self.W = torch.zeros(m, columns, **kw)
        self.gaps, self.objective = torch.zeros(columns, **kw), torch.zeros(columns, **kw)
        self.iterations = torch.zeros(columns, dtype=torch.int64, device=device)
        self.converged = torch.zeros(columns, dtype=torch.bool, device=device)

    def retire(self, state: _Active, step: int, tol: float, mu: float, final: bool) -> _Active:
        """Move out the columns that converged or stalled (all of them when ``final``)."""
        gap = _gap(state, mu)
        converged = gap < tol * (0.5 * state.f).clamp_min(1.0)
        leaving = converged | state.stalled | final
        cols = state.cols[leaving]
        self.W[:, cols] = state.W[:, leaving]
        self.gaps[cols], self.objective[cols] = gap[leaving], state.f[leaving]
        self.iterations[cols], self.converged[cols] = step, converged[leaving]
        return state.keep(~leaving)

    def solution(self) -> LassoSolution:
        return LassoSolution(self.W, self.iterations, self.gaps, self.converged, self.objective)
