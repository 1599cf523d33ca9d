"""disentangled_aae.factor_objective: L_Phi (Eq. 14) on hand-made cases: identity maps make L_rec
and L_cyc vanish and L_aug equal the task loss of the permuted batch; lambda_rec scales L_rec;
only labelled factors get task and augmentation terms; cycle choice per mode."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.disentangled_aae.factor_objective import (
    SOURCE_FACTORS,
    cycled_factors,
    factor_objective,
)
from lightning_modules.disentangled_aae.factor_split import FactorSplit

SPLIT = FactorSplit((3, 2, 2, 2))


def _identity(x):
    return x


def _batch(seed: int = 0, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, SPLIT.dim, generator=g)
    labels = {"pose": torch.randn(n, 3, generator=g), "identity": torch.tensor([0, 0, 1, 1, 2, 2])}
    return z, labels


def test_identity_maps_leave_only_the_task_and_its_permuted_copy():
    z, labels = _batch()
    terms = factor_objective(
        z, _identity, _identity, _identity, SPLIT, labels, ("pose",), ("pose",),
        torch.Generator().manual_seed(1),
    )  # fmt: skip
    pose = (labels["pose"] - z[:, :3]).abs().mean()  # Eq. 11 by hand
    assert terms.rec.item() == 0.0 and terms.cyc.item() == 0.0
    torch.testing.assert_close(terms.task, pose)
    # I(f*) = f*: row i carries sample pi(i)'s pose and the labels are permuted alike
    torch.testing.assert_close(terms.aug, pose)
    torch.testing.assert_close(terms.total, 2 * pose)
    assert set(terms.per_factor) == {"pose"}


def test_reconstruction_term_and_its_weight():
    z, labels = _batch(1)

    def halve(x):
        return x / 2

    args = (z, halve, _identity, _identity, SPLIT, labels, ("pose",), ())
    one = factor_objective(*args, torch.Generator().manual_seed(0))
    three = factor_objective(*args, torch.Generator().manual_seed(0), lambda_rec=3.0)
    torch.testing.assert_close(one.rec, (z / 2).abs().mean())  # |z - z/2|
    torch.testing.assert_close(three.total - one.total, 2 * one.rec)
    assert one.cyc.item() == 0.0 and one.aug.item() == 0.0  # nothing cycled


def test_an_unlabelled_cycled_factor_gets_a_cycle_term_but_no_augmentation():
    z, labels = _batch(2)

    def shrink(x):  # E(G(.)) that does not reproduce its input
        return 0.5 * x

    terms = factor_objective(
        z, _identity, _identity, shrink, SPLIT, labels, ("pose",), ("style",),
        torch.Generator().manual_seed(3),
    )  # fmt: skip
    assert terms.aug.item() == 0.0
    # f* = z with the style part permuted; I(f*) = f* / 2: L_cyc = mean |f*| / 2
    g = torch.Generator().manual_seed(3)
    permutation = torch.randperm(z.shape[0], generator=g)
    f_star = SPLIT.replace(z, "style", SPLIT.part(z, "style")[permutation])
    torch.testing.assert_close(terms.cyc, f_star.abs().mean() / 2)


def test_the_cycle_target_gets_no_gradient_but_the_mappings_do():
    z, labels = _batch(3)
    phi = torch.nn.Linear(SPLIT.dim, SPLIT.dim)
    inverse = torch.nn.Linear(SPLIT.dim, SPLIT.dim)
    terms = factor_objective(
        z, phi, inverse, _identity, SPLIT, labels, ("pose", "identity"), ("identity",),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    terms.cyc.backward()
    assert phi.weight.grad is not None and inverse.weight.grad is not None
    assert set(terms.per_factor) == {"pose", "identity"}


def test_cycled_factors_modes():
    g = torch.Generator().manual_seed(0)
    draws = {cycled_factors(SPLIT, "random", g) for _ in range(200)}
    assert draws == {(name,) for name in SPLIT.names}
    assert cycled_factors(SPLIT, "all", g) == SPLIT.names
    with pytest.raises(ValueError, match="cycle_attrs"):
        cycled_factors(SPLIT, "some", g)


def test_sources_train_pose_and_their_own_factor():
    assert SOURCE_FACTORS == {
        "identity": ("pose", "identity"),
        "expression": ("pose", "expression"),
        "style": ("pose", "style"),
    }
