"""lightning_modules.components.ridge_probe: ridge fit, per-column R^2, the probe matrix.

References are scikit-learn's ``Ridge(fit_intercept=True)`` and ``r2_score``, and numpy's
least squares, each an implementation independent of the one tested.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from lightning_modules.components.ridge_probe import probe_matrix, ridge_fit, ridge_r2


def _data(seed: int, n: int = 60, d: int = 6, t: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, size=d) + rng.normal(size=d)
    y = x @ rng.normal(size=(d, t)) + rng.normal(size=t) + rng.normal(size=(n, t))
    return x, y


@pytest.mark.parametrize("alpha", [1e-3, 1.0, 50.0])
def test_ridge_fit_matches_sklearn(alpha):
    x, y = _data(0)
    weights, bias = ridge_fit(torch.from_numpy(x).float(), torch.from_numpy(y).float(), alpha)
    assert weights.shape == (6, 3) and bias.shape == (3,) and weights.dtype == torch.float64
    # float32 inputs, float64 arithmetic: compare with sklearn on the same float32 values
    x32, y32 = x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    reference = Ridge(alpha=alpha, fit_intercept=True).fit(x32, y32)
    np.testing.assert_allclose(weights.numpy(), reference.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bias.numpy(), reference.intercept_, rtol=1e-8, atol=1e-10)


def test_ridge_fit_one_target_and_wide_inputs():
    # more dimensions than rows: the penalty keeps the problem well posed
    x, y = _data(1, n=8, d=12, t=1)
    weights, bias = ridge_fit(torch.from_numpy(x), torch.from_numpy(y[:, 0]), alpha=0.5)
    reference = Ridge(alpha=0.5, fit_intercept=True).fit(x, y[:, 0])
    assert weights.shape == (12,) and bias.shape == ()
    np.testing.assert_allclose(weights.numpy(), reference.coef_, rtol=1e-8, atol=1e-10)
    assert float(bias) == pytest.approx(reference.intercept_, rel=1e-8)


def test_zero_alpha_is_minimum_norm_least_squares():
    x, y = _data(2, n=30, d=4, t=2)
    x = np.concatenate([x, x[:, :1] * 2.0], axis=1)  # a dependent column: rank 4 of 5
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected, *_ = np.linalg.lstsq(xc, yc, rcond=None)  # minimum-norm solution
    weights, bias = ridge_fit(torch.from_numpy(x), torch.from_numpy(y), alpha=0.0)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bias.numpy(), y.mean(0) - x.mean(0) @ expected, atol=1e-10)


def test_the_bias_is_not_penalised():
    # a constant shift of y moves only the bias, whatever the penalty
    x, y = _data(3)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    weights, bias = ridge_fit(x_t, y_t, alpha=1e4)
    shifted_weights, shifted_bias = ridge_fit(x_t, y_t + 100.0, alpha=1e4)
    torch.testing.assert_close(shifted_weights, weights)
    torch.testing.assert_close(shifted_bias, bias + 100.0)


@pytest.mark.parametrize("alpha", [1e-3, 10.0])
def test_ridge_r2_matches_sklearn(alpha):
    x, y = _data(4, n=120)
    train, test = slice(0, 80), slice(80, None)
    predicted = Ridge(alpha=alpha).fit(x[train], y[train]).predict(x[test])
    expected = r2_score(y[test], predicted, multioutput="raw_values")
    got = ridge_r2(*(torch.from_numpy(a) for a in (x[train], y[train], x[test], y[test])), alpha)
    assert got.shape == (3,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_r2_of_an_exact_linear_target_is_one():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(200, 5, generator=generator)
    y = x @ torch.randn(5, 2, generator=generator) + torch.tensor([3.0, -1.0])
    r2 = ridge_r2(x[:150], y[:150], x[150:], y[150:], alpha=1e-10)
    assert bool((r2 > 1 - 1e-9).all()), r2


def test_r2_of_an_independent_target_is_near_zero():
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(600, 5, generator=generator)
    y = torch.randn(600, 4, generator=generator)  # unrelated to x
    r2 = ridge_r2(x[:400], y[:400], x[400:], y[400:], alpha=1e-3)
    # 5 spurious weights fitted on 400 rows cost about 5 / 400 of the variance on new rows
    assert bool((r2 < 0.03).all() and (r2 > -0.1).all()), r2


def test_constant_test_column_follows_sklearn():
    x, y = _data(7, n=40, t=2)
    y_test = y[30:].copy()
    y_test[:, 1] = 2.5  # SS_tot = 0: sklearn gives 0.0 unless predicted exactly (then 1.0)
    predicted = Ridge(alpha=1.0).fit(x[:30], y[:30]).predict(x[30:])
    expected = r2_score(y_test, predicted, multioutput="raw_values")
    got = ridge_r2(*(torch.from_numpy(a) for a in (x[:30], y[:30], x[30:], y_test)), alpha=1.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    assert float(got[1]) == 0.0
    # constant in train and test: predicted exactly, R^2 = 1
    constant = torch.full((40,), 2.5, dtype=torch.float64)
    x_t = torch.from_numpy(x)
    assert float(ridge_r2(x_t[:30], constant[:30], x_t[30:], constant[30:], 1.0)[0]) == 1.0


def test_probe_matrix_layout_and_values():
    generator = torch.Generator().manual_seed(8)
    n_train, n_test = 300, 100
    n = n_train + n_test
    f_a = torch.randn(n, 4, generator=generator)
    f_b = torch.randn(n, 3, generator=generator)
    # pose: 3 columns read linearly off f_a; identity: 1 column off f_b, plus a little noise
    pose = f_a @ torch.randn(4, 3, generator=generator) + 0.05 * torch.randn(
        n, 3, generator=generator
    )
    identity = f_b @ torch.randn(3, generator=generator) + 0.05 * torch.randn(
        n, generator=generator
    )

    def split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t[:n_train], t[n_train:]

    features = {"f_a": split(f_a), "f_b": split(f_b)}
    factors = {"pose": split(pose), "identity": split(identity)}
    matrix = probe_matrix(features, factors, alpha=1e-3)
    assert list(matrix) == ["f_a", "f_b"]
    assert all(list(row) == ["pose", "identity"] for row in matrix.values())
    assert all(isinstance(v, float) for row in matrix.values() for v in row.values())
    # each entry is sklearn's column-averaged R^2 of its own probe
    for feature, (x_train, x_test) in features.items():
        for factor, (y_train, y_test) in factors.items():
            probe = Ridge(alpha=1e-3).fit(x_train.numpy(), y_train.numpy())
            expected = r2_score(y_test.numpy(), probe.predict(x_test.numpy()))
            assert matrix[feature][factor] == pytest.approx(expected, abs=1e-6)
    # and it is diagonal-dominant
    assert matrix["f_a"]["pose"] > 0.99 and matrix["f_b"]["identity"] > 0.99
    assert matrix["f_a"]["identity"] < 0.05 and matrix["f_b"]["pose"] < 0.05


def test_bad_inputs_are_refused():
    x, y = torch.zeros(10, 3), torch.zeros(10, 2)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        ridge_fit(x, y, alpha=-1.0)
    with pytest.raises(ValueError, match="same number of rows"):
        ridge_fit(x, y[:9])
    with pytest.raises(ValueError, match="finite"):
        ridge_fit(x, torch.full((10, 2), float("nan")))
    with pytest.raises(ValueError, match="train and test disagree"):
        ridge_r2(x, y, torch.zeros(5, 4), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="f_a"):
        probe_matrix({"f_a": (x, x[:4])}, {"pose": (y, y[:5])})
    with pytest.raises(ValueError, match="'pose': train has 2 columns, test 3"):
        probe_matrix({"f_a": (x, x[:5])}, {"pose": (y, torch.zeros(5, 3))})
