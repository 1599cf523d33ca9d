"""ISTRC's sphere geometry (spec "Inference/uses", "Synthetic stand-in" assertion 7): slerp against
a numpy eq. (2), its endpoints, norm, angle and midpoint, the lerp fallback and the antipodal
error; lerp; the n-face means; arithmetic; seeded noise variations."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import lightning_modules.istrc.sphere as sphere_module
from lightning_modules.istrc.sphere import (
    arithmetic,
    interpolation_mus,
    lerp,
    noise_variations,
    normalise,
    normalised_mean,
    raw_mean,
    slerp,
    slerp_mean,
)

DTYPES = [torch.float32, torch.float64]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def unit_rows(n: int, dim: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    rows = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return rows / rows.norm(dim=-1, keepdim=True)


def numpy_slerp(q1: np.ndarray, q2: np.ndarray, mu: float) -> np.ndarray:
    """PAPER eq. (2) with the spec's sin((1 - mu) theta), written out for rows of unit vectors."""
    theta = np.arccos(np.clip(np.sum(q1 * q2, axis=-1, keepdims=True), -1.0, 1.0))
    return (np.sin((1 - mu) * theta) * q1 + np.sin(mu * theta) * q2) / np.sin(theta)


def test_docstring_examples():
    assert doctest.testmod(sphere_module, extraglobs={"torch": torch}).failed == 0


def test_normalise_gives_unit_rows_and_leaves_zero_rows_at_zero():
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-1e-3, 0.0]])
    assert torch.allclose(normalise(z), torch.tensor([[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]]))
    with pytest.raises(ValueError, match="eps"):
        normalise(z, eps=0.0)


# --- slerp (eq. 2) --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slerp_matches_a_numpy_eq_2(seed):
    q1, q2 = unit_rows(6, 128, seed), unit_rows(6, 128, seed + 100)
    for mu in (0.0, 0.1, 1 / 3, 0.5, 0.9, 1.0):
        expected = numpy_slerp(q1.numpy(), q2.numpy(), mu)
        np.testing.assert_allclose(slerp(q1, q2, mu).numpy(), expected, atol=1e-12)
        got32 = slerp(q1.float(), q2.float(), mu)
        assert got32.dtype == torch.float32
        np.testing.assert_allclose(got32.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_slerp_endpoints_are_q1_and_q2(dtype):
    q1, q2 = unit_rows(5, 16, 0, dtype), unit_rows(5, 16, 1, dtype)
    tolerance = TOLERANCE[dtype]
    assert torch.allclose(slerp(q1, q2, 0.0), q1, atol=tolerance)
    assert torch.allclose(slerp(q1, q2, 1.0), q2, atol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_slerp_stays_on_the_sphere_with_the_angle_to_q1_linear_in_mu(dtype):
    q1, q2 = unit_rows(5, 32, 3, dtype), unit_rows(5, 32, 4, dtype)
    theta = torch.arccos((q1 * q2).sum(dim=-1))
    mus = interpolation_mus(10, dtype=dtype)
    path = slerp(q1, q2, mus)  # (10, 5, 32)
    tolerance = TOLERANCE[dtype]
    assert path.shape == (10, 5, 32)
    assert torch.allclose(path.norm(dim=-1), torch.ones(10, 5, dtype=dtype), atol=tolerance)
    angle_to_q1 = torch.arccos((path * q1).sum(dim=-1).clamp(-1, 1))
    # arccos loses precision near 0 in float32 (sqrt of the rounding of the dot product)
    angle_tolerance = 1e-3 if dtype == torch.float32 else 1e-9
    assert torch.allclose(angle_to_q1, mus[:, None] * theta, atol=angle_tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_slerp_midpoint_is_the_normalised_sum(dtype):
    q1, q2 = unit_rows(7, 128, 5, dtype), unit_rows(7, 128, 6, dtype)
    expected = (q1 + q2) / (q1 + q2).norm(dim=-1, keepdim=True)
    assert torch.allclose(slerp(q1, q2, 0.5), expected, atol=TOLERANCE[dtype])


def test_a_tensor_of_mus_gives_one_row_per_mu():
    q1, q2 = unit_rows(3, 8, 7), unit_rows(3, 8, 8)
    mus = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    rows = slerp(q1, q2, mus)
    assert rows.shape == (3, 3, 8)
    for row, mu in zip(rows, mus.tolist(), strict=True):
        assert torch.equal(row, slerp(q1, q2, mu))
    assert slerp(q1[0], q2[0], torch.tensor(0.5)).shape == (8,)  # a 0-d mu is one mu


def test_nearly_identical_inputs_take_the_lerp_fallback():
    q1 = unit_rows(1, 16, 9)
    perpendicular = unit_rows(1, 16, 10)
    perpendicular = normalise(perpendicular - (perpendicular * q1).sum() * q1)
    q2 = normalise(q1 + 1e-7 * perpendicular)  # theta ~ 1e-7 < 1e-6
    theta = torch.arccos((q1 * q2).sum().clamp(-1, 1))
    assert 0 < theta < 1e-6
    for mu in (0.0, 0.3, 1.0):
        assert torch.equal(slerp(q1, q2, mu), lerp(q1, q2, mu))
    same = slerp(q1, q1.clone(), 0.4)  # theta = 0: sin(theta) = 0 would give 0 / 0
    assert torch.isfinite(same).all() and torch.allclose(same, q1, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_antipodal_inputs_raise_a_clear_error(dtype):
    q1 = unit_rows(4, 16, 11, dtype)
    q2 = unit_rows(4, 16, 12, dtype)
    q2[2] = -q1[2]
    with pytest.raises(ValueError, match=r"antipodal \(theta = pi\) in 1 of 4 rows"):
        slerp(q1, q2, 0.5)
    with pytest.raises(ValueError, match="antipodal"):
        slerp(q1[2], -q1[2], 0.0)


def test_nearly_antipodal_inputs_still_interpolate():
    q1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    q2 = torch.tensor(
        [math.cos(math.pi - 1e-3), math.sin(math.pi - 1e-3), 0.0], dtype=torch.float64
    )
    middle = slerp(q1, q2, 0.5)
    expected = torch.tensor([math.cos(math.pi / 2 - 5e-4), math.sin(math.pi / 2 - 5e-4), 0.0])
    assert torch.allclose(middle, expected.double(), atol=1e-10)


def test_slerp_and_lerp_refuse_bad_input():
    q1, q2 = unit_rows(2, 8, 0), unit_rows(2, 8, 1)
    for interpolate in (slerp, lerp):
        with pytest.raises(ValueError, match="mu must lie in"):
            interpolate(q1, q2, 1.5)
        with pytest.raises(ValueError, match="mu must lie in"):
            interpolate(q1, q2, torch.tensor([0.0, -0.1]))
        with pytest.raises(ValueError, match="mu must lie in"):
            interpolate(q1, q2, float("nan"))
        with pytest.raises(ValueError, match="mu must be a float or a 1-d"):
            interpolate(q1, q2, torch.zeros(2, 2))
        with pytest.raises(ValueError, match="q2 must match q1"):
            interpolate(q1, q2[:, :4], 0.5)
        with pytest.raises(ValueError, match="q2 must match q1"):
            interpolate(q1, q2.float(), 0.5)
        with pytest.raises(ValueError, match="q1 must be a float tensor"):
            interpolate(torch.ones(2, 8, dtype=torch.long), q2, 0.5)


# --- lerp and the frames --------------------------------------------------------------------------


def test_lerp_is_the_chord_unless_renormalised():
    q1, q2 = unit_rows(4, 8, 13), unit_rows(4, 8, 14)
    a, b = q1.numpy(), q2.numpy()
    np.testing.assert_allclose(lerp(q1, q2, 0.3).numpy(), 0.7 * a + 0.3 * b, atol=1e-15)
    chord = 0.5 * a + 0.5 * b
    assert (np.linalg.norm(chord, axis=-1) < 1).all()
    expected = chord / np.linalg.norm(chord, axis=-1, keepdims=True)
    np.testing.assert_allclose(lerp(q1, q2, 0.5, renormalise=True).numpy(), expected, atol=1e-15)
    assert lerp(q1, q2, interpolation_mus(10, dtype=torch.float64)).shape == (10, 4, 8)


def test_interpolation_mus_are_ten_evenly_spaced_frames():
    np.testing.assert_allclose(interpolation_mus().numpy(), np.arange(10) / 9, atol=1e-7)
    assert interpolation_mus(2).tolist() == [0.0, 1.0]
    for frames in (1, 0, -3):
        with pytest.raises(ValueError, match="frames"):
            interpolation_mus(frames)


# --- averages -------------------------------------------------------------------------------------


def test_slerp_mean_of_two_is_the_normalised_sum_and_of_one_is_itself():
    q = unit_rows(2, 128, 15)
    assert torch.allclose(slerp_mean(q), normalise(q[0] + q[1]), atol=1e-12)
    assert torch.allclose(slerp_mean(q), normalised_mean(q), atol=1e-12)
    assert torch.equal(slerp_mean(q[:1]), q[0])


@pytest.mark.parametrize("n", [3, 4, 64])
def test_slerp_mean_stays_on_the_sphere(n):
    q = unit_rows(n, 128, n)
    assert abs(slerp_mean(q).norm().item() - 1) < 1e-12
    assert abs(slerp_mean(q.float()).norm().item() - 1) < 1e-5


def test_slerp_mean_on_a_great_circle_averages_the_angles():
    """On a circle, slerp is linear in the angle, so m_j = m_{j-1} + (phi_j - m_{j-1}) / j: the
    incremental mean of points within a half circle is the arithmetic mean of their angles."""
    phis = np.array([0.1, 1.3, 0.7, 2.4, 0.2, 1.9])
    q = torch.from_numpy(np.stack([np.cos(phis), np.sin(phis), np.zeros_like(phis)], axis=1))
    mean = slerp_mean(q)
    expected = np.array([np.cos(phis.mean()), np.sin(phis.mean()), 0.0])
    np.testing.assert_allclose(mean.numpy(), expected, atol=1e-12)


def test_slerp_mean_averages_batches_elementwise():
    q = torch.stack([unit_rows(5, 16, seed) for seed in range(4)])  # (n=4, B=5, D=16)
    means = slerp_mean(q)
    assert means.shape == (5, 16)
    for b in range(5):
        assert torch.allclose(means[b], slerp_mean(q[:, b]), atol=1e-14)


def test_raw_mean_of_many_faces_shrinks_and_the_normalised_mean_keeps_its_direction():
    q = unit_rows(64, 128, 16)
    raw = raw_mean(q)
    np.testing.assert_allclose(raw.numpy(), q.numpy().sum(axis=0) / 64, atol=1e-15)
    assert raw.norm() < 0.5  # spec assertion 7 (about 1 / sqrt(64) for random directions)
    direction = normalised_mean(q)
    assert abs(direction.norm().item() - 1) < 1e-12
    assert torch.allclose(direction, raw / raw.norm(), atol=1e-12)


def test_means_refuse_no_faces():
    for mean in (slerp_mean, normalised_mean, raw_mean):
        with pytest.raises(ValueError, match="q must be"):
            mean(torch.zeros(0, 8))
        with pytest.raises(ValueError, match="q must be"):
            mean(torch.ones(8))


def test_slerp_mean_names_the_antipodal_face():
    q = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    with pytest.raises(ValueError, match=r"q\[:1\] and q\[1\].*antipodal"):
        slerp_mean(q)


# --- arithmetic -----------------------------------------------------------------------------------


def test_arithmetic_is_the_normalised_or_raw_a_minus_b_plus_c():
    a, b, c = (unit_rows(3, 32, seed) for seed in (17, 18, 19))
    raw = a.numpy() - b.numpy() + c.numpy()
    np.testing.assert_allclose(arithmetic(a, b, c, renormalise=False).numpy(), raw, atol=1e-15)
    expected = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    np.testing.assert_allclose(arithmetic(a, b, c).numpy(), expected, atol=1e-15)
    with pytest.raises(ValueError, match="c must match a"):
        arithmetic(a, b, c[:2])


# --- noise variations -----------------------------------------------------------------------------


def test_noise_variations_are_seeded_unit_and_counted():
    z = unit_rows(1, 128, 20)[0].float()
    first = noise_variations(z, generator=torch.Generator().manual_seed(3))
    again = noise_variations(z, generator=torch.Generator().manual_seed(3))
    other = noise_variations(z, generator=torch.Generator().manual_seed(4))
    assert first.shape == (63, 128) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert torch.allclose(first.norm(dim=-1), torch.ones(63), atol=1e-6)
    assert torch.equal(noise_variations(z), noise_variations(z))  # None: a fresh seeded generator


def test_noise_is_sigma_times_the_generators_normal_draws():
    z = unit_rows(2, 128, 21).float()  # (B, D): count copies of each row
    variations = noise_variations(
        z, count=5, sigma=0.02, generator=torch.Generator().manual_seed(7)
    )
    draws = torch.randn(5, 2, 128, generator=torch.Generator().manual_seed(7))
    assert variations.shape == (5, 2, 128)
    assert torch.allclose(variations, normalise(z + 0.02 * draws), atol=1e-7)
    # small noise: ||z_j - z|| is about sigma sqrt(D - 1), the part of eps off z's direction
    spread = (variations - z).norm(dim=-1).mean().item()
    assert abs(spread / (0.02 * math.sqrt(127)) - 1) < 0.15
    assert torch.allclose(noise_variations(z, count=3, sigma=0.0), z.expand(3, 2, 128))


def test_noise_variations_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    noise_variations(unit_rows(1, 16, 22)[0], count=10, generator=torch.Generator().manual_seed(0))
    noise_variations(unit_rows(1, 16, 22)[0], count=10)
    assert torch.equal(torch.get_rng_state(), state)


def test_noise_variations_refuse_bad_counts_and_sigmas():
    z = unit_rows(1, 8, 23)[0]
    for count in (0, -1):
        with pytest.raises(ValueError, match="count"):
            noise_variations(z, count=count)
    for sigma in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            noise_variations(z, sigma=sigma)
