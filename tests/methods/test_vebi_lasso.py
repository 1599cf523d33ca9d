"""VEBI's mu-lasso (Eq. 3.1) and its l1-ball projection, against independent references.

References: hand-worked projections and duality gaps (worked in the comments), a bisection on the
soft threshold and scipy's SLSQP for the projection; scikit-learn's LARS-lasso path
(``tests/vebi_lasso_oracle.py``) and numpy's ``lstsq`` for the solver. The planted problems are
the spec's (section 9, "Solver"): n = 200, m = 500, 5 informative columns, noise 0.01,
mu = ||w_true||_1, several classes per seed solved in one batched call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from vebi_lasso_oracle import lars_mu_lasso, objective

from lightning_modules.vebi.l1_ball import project_l1_ball
from lightning_modules.vebi.lasso import duality_gap, relevant_pairs, solve_mu_lasso

CLASSES = 4  # columns (classes) per planted problem, solved in one call
MU = 7.0  # ||w_true||_1 of every planted column


def planted(seed: int, n: int = 200, m: int = 500, informative: int = 5, noise: float = 0.01):
    """The spec's planted problem: A (n, m) Gaussian; each column of W_true (m, C) has
    ``informative`` non-zero rows of random sign and magnitude, rescaled so that every column has
    l1 norm MU; B = A W_true + noise. Returns A, B, W_true, mu = ||w_true||_1 = MU."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=g, dtype=torch.float64)
    W_true = torch.zeros(m, CLASSES, dtype=torch.float64)
    for c in range(CLASSES):
        rows = torch.randperm(m, generator=g)[:informative]
        sign = torch.randint(0, 2, (informative,), generator=g) * 2 - 1
        W_true[rows, c] = sign * (1 + torch.rand(informative, generator=g, dtype=torch.float64))
    W_true = W_true * (MU / W_true.abs().sum(0))
    B = A @ W_true + noise * torch.randn(n, CLASSES, generator=g, dtype=torch.float64)
    return A, B, W_true, MU


def bisection_projection(v: np.ndarray, mu: float) -> np.ndarray:
    """Projection of one vector by bisecting theta in sum(max(|v| - theta, 0)) = mu."""
    if np.abs(v).sum() <= mu:
        return v.copy()
    low, high = 0.0, np.abs(v).max()
    for _ in range(200):
        theta = (low + high) / 2
        low, high = (
            (theta, high) if np.clip(np.abs(v) - theta, 0, None).sum() > mu else (low, theta)
        )
    return np.sign(v) * np.clip(np.abs(v) - (low + high) / 2, 0, None)


# ---- projection ----


def test_projection_hand_worked():
    # (3, 1), mu = 1: both kept would need theta = 1.5 > 1, so only 3 stays: theta = 2 -> (1, 0).
    # (2, -2, 0.5), mu = 2: u = (2, 2, .5), partial sums (2, 4, 4.5); u_j > (S_j - 2) / j holds
    # for j = 1 (2 > 0) and j = 2 (2 > 1), not j = 3 (.5 < 2.5 / 3): theta = (4 - 2) / 2 = 1.
    v = torch.zeros(3, 2, dtype=torch.float64)
    v[:2, 0] = torch.tensor([3.0, 1.0])
    v[:, 1] = torch.tensor([2.0, -2.0, 0.5])
    out = project_l1_ball(v, 1.0)[:, :1]
    assert out[:, 0].tolist() == [1.0, 0.0, 0.0]
    out = project_l1_ball(v[:, 1:], 2.0)
    assert out[:, 0].tolist() == [1.0, -1.0, 0.0]


def test_projection_matches_bisection():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(40, 24, generator=g, dtype=torch.float64) * torch.linspace(0.05, 3, 24)
    mu = 2.5
    out = project_l1_ball(v, mu).numpy()
    for c in range(v.shape[1]):
        expected = bisection_projection(v[:, c].numpy(), mu)
        np.testing.assert_allclose(out[:, c], expected, atol=1e-12)
        assert np.array_equal(out[:, c] == 0, expected == 0)  # exact zeros off the support
    outside = v.abs().sum(0) > mu
    assert outside.sum() >= 10
    np.testing.assert_allclose(np.abs(out).sum(0)[outside.numpy()], mu, rtol=1e-12)


def test_projection_matches_slsqp():
    """The projection as a smooth QP: w = p - q, p, q >= 0, sum(p + q) <= mu."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(6, 3)) * 2
    mu = 1.5
    out = project_l1_ball(torch.from_numpy(v), mu).numpy()
    for c in range(3):
        x = v[:, c]
        result = minimize(
            lambda z, x=x: np.sum((z[:6] - z[6:] - x) ** 2),
            np.zeros(12),
            jac=lambda z, x=x: np.concatenate([2 * (z[:6] - z[6:] - x), -2 * (z[:6] - z[6:] - x)]),
            bounds=[(0, None)] * 12,
            constraints=[
                {"type": "ineq", "fun": lambda z: mu - z.sum(), "jac": lambda z: -np.ones(12)}
            ],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert result.success
        np.testing.assert_allclose(out[:, c], result.x[:6] - result.x[6:], atol=1e-6)


def test_projection_keeps_points_inside():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(30, 5, generator=g)
    v = v / v.abs().sum(0) * torch.tensor([0.1, 0.5, 0.9, 0.99, 1.0])
    assert torch.equal(project_l1_ball(v, 1.0), v)


def test_projection_float32():
    g = torch.Generator().manual_seed(3)
    v = torch.randn(50, 7, generator=g)
    out = project_l1_ball(v, 2.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), project_l1_ball(v.double(), 2.0), atol=1e-6, rtol=0)


def test_projection_rejects_bad_input():
    with pytest.raises(ValueError, match="mu"):
        project_l1_ball(torch.ones(3, 2), 0.0)
    with pytest.raises(ValueError, match=r"\(m, C\)"):
        project_l1_ball(torch.ones(3), 1.0)


# ---- solver ----


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_problems_match_lars_and_recover_support(seed):
    A, B, W_true, mu = planted(seed)
    solution = solve_mu_lasso(A, B, mu)
    assert solution.W.shape == (500, CLASSES)
    for c in range(CLASSES):
        _check_against_lars(A, B[:, c], solution, c, mu, W_true[:, c])


def _check_against_lars(A, b, solution, c, mu, w_true):
    w = solution.W[:, c]
    assert solution.converged[c]
    assert w.abs().sum() <= mu * (1 + 1e-6)
    reference = lars_mu_lasso(A.numpy(), b.numpy(), mu)
    f_ref = objective(A.numpy(), b.numpy(), reference)
    f = objective(A.numpy(), b.numpy(), w.numpy())
    assert abs(f - f_ref) <= 1e-5 * f_ref
    assert solution.objective[c].item() == pytest.approx(f, rel=1e-9)
    # the gap bounds the 1/2-scaled objective's excess
    assert f - f_ref <= 2 * solution.gaps[c].item() + 1e-12
    informative = w_true != 0
    assert (w.abs()[informative] > 1e-8).sum() >= 4


def test_oracle_satisfies_kkt():
    """The reference itself: at the constrained optimum with ||w||_1 = mu, g = A^T (b - A w) has
    g_j = sign(w_j) ||g||_inf on the support."""
    A, B, _, mu = planted(4)
    w = lars_mu_lasso(A.numpy(), B[:, 0].numpy(), mu)
    g = A.numpy().T @ (B[:, 0].numpy() - A.numpy() @ w)
    support = np.abs(w) > 1e-10
    assert np.abs(w).sum() == pytest.approx(mu, rel=1e-12)
    np.testing.assert_allclose(g[support], np.sign(w[support]) * np.abs(g).max(), rtol=1e-8)


def test_duality_gap_by_hand():
    # A = I, b = (3, 1), mu = 1; r = b - w.
    # w = 0: r = (3, 1), ||r||^2 = 10, b^T r = 10, ||r||_inf = 3 -> gap = 3.
    # w = (.5, 0): r = (2.5, 1), 7.25 - 8.5 + 2.5 = 1.25.
    # w = (1, 0), the projection of b (the optimum): r = (2, 1), 5 - 7 + 2 = 0.
    A, B = torch.eye(2, dtype=torch.float64), torch.tensor([[3.0], [1.0]], dtype=torch.float64)
    W = torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    gaps = duality_gap(A, B.expand(2, 3), W, 1.0)
    assert gaps.tolist() == [3.0, 1.25, 0.0]
    solution = solve_mu_lasso(A, B, 1.0)
    torch.testing.assert_close(solution.W[:, 0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert solution.converged.all() and solution.objective.item() == pytest.approx(5.0)


@pytest.mark.parametrize("gram", [False, True])
def test_reported_gaps_are_the_spec_formula(gram):
    A, B, _, mu = planted(5)
    solution = solve_mu_lasso(A, B, mu, gram=gram)
    torch.testing.assert_close(
        solution.gaps, duality_gap(A, B, solution.W, mu), rtol=1e-4, atol=1e-11
    )
    f = ((A @ solution.W - B) ** 2).sum(0)
    assert (solution.gaps < 1e-6 * (0.5 * f).clamp_min(1)).all()


@pytest.mark.parametrize("gram", [False, True])
def test_inactive_constraint_gives_least_squares(gram):
    g = torch.Generator().manual_seed(6)
    A = torch.randn(60, 8, generator=g, dtype=torch.float64)
    B = torch.randn(60, 3, generator=g, dtype=torch.float64)
    least_squares = np.linalg.lstsq(A.numpy(), B.numpy(), rcond=None)[0]
    mu = 1.5 * np.abs(least_squares).sum(0).max()
    solution = solve_mu_lasso(A, B, mu, gram=gram, tol=1e-10)
    assert solution.converged.all()
    np.testing.assert_allclose(solution.W.numpy(), least_squares, atol=1e-6)


def test_gram_and_direct_forms_agree():
    A, B, _, mu = planted(7)
    direct = solve_mu_lasso(A, B, mu, gram=False, tol=1e-10)
    via_gram = solve_mu_lasso(A, B, mu, gram=True, tol=1e-10)
    torch.testing.assert_close(direct.W, via_gram.W, atol=1e-7, rtol=0)
    torch.testing.assert_close(direct.objective, via_gram.objective, rtol=1e-9, atol=0)


def test_batched_equals_each_column_alone():
    A, B, _, mu = planted(8)
    batched = solve_mu_lasso(A, B, mu, tol=1e-10)
    for c in range(CLASSES):
        alone = solve_mu_lasso(A, B[:, c : c + 1], mu, tol=1e-10)
        torch.testing.assert_close(batched.W[:, c : c + 1], alone.W, atol=1e-8, rtol=0)
        assert abs(batched.iterations[c].item() - alone.iterations.item()) <= 2


def test_float32_input_is_solved_in_float64():
    A, B, _, mu = planted(9)
    A32, B32 = A.float(), B.float()
    from_float32 = solve_mu_lasso(A32, B32, mu, tol=1e-10)
    reference = solve_mu_lasso(A32.double(), B32.double(), mu, tol=1e-10)
    assert from_float32.W.dtype == torch.float64
    torch.testing.assert_close(from_float32.W, reference.W, atol=1e-12, rtol=0)


def test_numpy_input():
    A, B, _, mu = planted(10)
    from_numpy = solve_mu_lasso(A.numpy(), B.numpy(), mu)
    torch.testing.assert_close(from_numpy.W, solve_mu_lasso(A, B, mu).W, atol=0, rtol=0)


def test_unfinished_problem_reports_not_converged():
    A, B, _, mu = planted(11)
    solution = solve_mu_lasso(A, B, mu, max_iter=3)
    assert not solution.converged.any()
    assert solution.iterations.tolist() == [3] * CLASSES
    f = ((A @ solution.W - B) ** 2).sum(0)
    torch.testing.assert_close(solution.gaps, duality_gap(A, B, solution.W, mu), rtol=1e-6, atol=0)
    assert (solution.gaps >= 1e-6 * (0.5 * f).clamp_min(1)).all()
    assert (solution.W.abs().sum(0) <= mu * (1 + 1e-12)).all()  # feasible even when unfinished


def test_converged_columns_stop_while_others_go_on():
    """Cut the run one step before the slowest column converges: the columns that had converged
    by then hold exactly their final weights, and the slowest is reported unfinished."""
    A, B, _, mu = planted(12)
    full = solve_mu_lasso(A, B, mu)
    slow = int(full.iterations.argmax())
    assert full.iterations.min() < full.iterations[slow]
    cut = solve_mu_lasso(A, B, mu, max_iter=int(full.iterations[slow]) - 1)
    finished = full.iterations < full.iterations[slow]
    assert cut.converged.tolist() == finished.tolist()
    assert torch.equal(cut.W[:, finished], full.W[:, finished])
    assert torch.equal(cut.iterations[finished], full.iterations[finished])
    assert not torch.equal(cut.W[:, slow], full.W[:, slow])


def test_zero_target_stops_at_once():
    """b = 0: w = 0 is optimal (gap 0), so that column takes no step while the others run."""
    A, B, _, mu = planted(14)
    B[:, 1] = 0
    solution = solve_mu_lasso(A, B, mu)
    assert solution.converged.all() and solution.iterations[1] == 0
    assert torch.equal(solution.W[:, 1], torch.zeros(A.shape[1], dtype=torch.float64))
    assert (solution.iterations[[0, 2, 3]] > 0).all()


def test_relevant_pairs():
    W = torch.tensor([[0.0, 2.0], [1e-9, 0.0], [-0.3, 0.0], [0.0, 0.0]])
    per_class, union = relevant_pairs(W)
    assert per_class.tolist() == [[False, True], [False, False], [True, False], [False, False]]
    assert union.tolist() == [True, False, True, False]


def test_rejects_bad_problems():
    A, B = torch.randn(10, 4), torch.randn(10, 2)
    with pytest.raises(ValueError, match="B must be"):
        solve_mu_lasso(A, B[:9], 1.0)
    with pytest.raises(ValueError, match="A must be"):
        solve_mu_lasso(A[0], B, 1.0)
    for mu in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="mu"):
            solve_mu_lasso(A, B, mu)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    A, B, _, mu = planted(13)
    on_cpu = solve_mu_lasso(A, B, mu, tol=1e-10)
    on_gpu = solve_mu_lasso(A.cuda(), B.cuda(), mu, tol=1e-10)
    assert on_gpu.W.device.type == "cuda"
    torch.testing.assert_close(on_gpu.W.cpu(), on_cpu.W, atol=1e-8, rtol=0)
    assert on_gpu.converged.all()


def test_progress_bar(capsys):
    A, B, _, mu = planted(15)
    solve_mu_lasso(A, B, mu, progress=True)
    assert "mu-lasso" in capsys.readouterr().err
