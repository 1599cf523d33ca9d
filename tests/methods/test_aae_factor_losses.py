"""The disentangled AAE's Stage B pieces: the factor split and the cycle edit.

Values are checked against numbers worked out in comments.
"""

from __future__ import annotations

import pytest
import torch

from lightning_modules.disentangled_aae.cycle import (
    cycle_loss,
    permute_factor,
    random_permutation,
)
from lightning_modules.disentangled_aae.factor_split import FactorSplit


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- FactorSplit ----------------------------------------------------------------------------


def test_default_split_is_pose_identity_expression_style_3_32_32_32():
    split = FactorSplit()
    assert split.dim == 99
    assert split.slice("pose") == slice(0, 3)
    assert split.slice("identity") == slice(3, 35)
    assert split.slice("expression") == slice(35, 67)
    assert split.slice("style") == slice(67, 99)
    f = torch.arange(2 * 99).reshape(2, 99)
    assert torch.equal(split.part(f, "expression"), f[:, 35:67])
    assert split.part(f, "pose").shape == (2, 3)


def test_split_parts_round_trip_and_replace_copies():
    split = FactorSplit((2, 1, 3), ("a", "b", "c"))
    f = torch.randn(4, 6, generator=_gen(0))
    original = f.clone()
    parts = [split.part(f, name) for name in split.names]
    assert torch.equal(torch.cat(parts, dim=1), f)
    for name in split.names:
        assert torch.equal(split.replace(f, name, split.part(f, name)), f)
    new_b = torch.full((4, 1), 7.0)
    edited = split.replace(f, "b", new_b)
    assert torch.equal(edited[:, 2:3], new_b)
    assert torch.equal(edited[:, :2], f[:, :2]) and torch.equal(edited[:, 3:], f[:, 3:])
    assert torch.equal(f, original)  # not in place


def test_replace_passes_gradients_to_values_and_kept_parts():
    split = FactorSplit((1, 2), ("a", "b"))
    f = torch.zeros(1, 3, requires_grad=True)
    values = torch.zeros(1, 2, requires_grad=True)
    weights = torch.tensor([[1.0, 2.0, 3.0]])
    (split.replace(f, "b", values) * weights).sum().backward()
    assert torch.equal(f.grad, torch.tensor([[1.0, 0.0, 0.0]]))  # replaced columns get none
    assert torch.equal(values.grad, torch.tensor([[2.0, 3.0]]))


def test_split_accepts_lists_and_stays_hashable():
    split = FactorSplit([3, 4], ["x", "y"])
    assert split.sizes == (3, 4) and split.names == ("x", "y")
    assert hash(split) == hash(FactorSplit((3, 4), ("x", "y")))


@pytest.mark.parametrize(
    ("sizes", "names", "match"),
    [
        ((3, 0), ("a", "b"), "positive integer"),
        ((3, -2), ("a", "b"), "positive integer"),
        ((3, 2.5), ("a", "b"), "positive integer"),
        ((3, True), ("a", "b"), "positive integer"),
        ((3, 2), ("a",), "same length"),
        ((3, 2), ("a", "a"), "unique"),
        ((3, 2), ("a", ""), "non-empty"),
        ((), (), "at least one"),
    ],
)
def test_split_refuses_bad_definitions(sizes, names, match):
    with pytest.raises(ValueError, match=match):
        FactorSplit(sizes, names)


def test_split_refuses_unknown_names_and_wrong_shapes():
    split = FactorSplit()
    with pytest.raises(ValueError, match="unknown factor 'age'"):
        split.slice("age")
    with pytest.raises(ValueError, match="last dimension 99"):
        split.part(torch.zeros(2, 98), "pose")
    with pytest.raises(ValueError, match=r"\(2, 32\)"):
        split.replace(torch.zeros(2, 99), "style", torch.zeros(2, 31))


# --- cycle ----------------------------------------------------------------------------------


def test_permute_factor_moves_one_part_row_wise():
    split = FactorSplit()
    f = torch.randn(5, 99, generator=_gen(0))
    original = f.clone()
    perm = torch.tensor([3, 0, 4, 1, 2])
    f_star = permute_factor(f, split, "expression", perm)
    for i in range(5):
        assert torch.equal(f_star[i, 35:67], f[int(perm[i]), 35:67])
    keep = torch.ones(99, dtype=torch.bool)
    keep[35:67] = False
    assert torch.equal(f_star[:, keep], f[:, keep])
    assert torch.equal(f, original)


def test_permute_factor_hand_worked():
    # split (1, 2): rows [a | b b]; perm [1, 2, 0] moves part "b" up by one row
    split = FactorSplit((1, 2), ("a", "b"))
    f = torch.tensor([[0.0, 1, 2], [10, 11, 12], [20, 21, 22]])
    f_star = permute_factor(f, split, "b", torch.tensor([1, 2, 0]))
    assert f_star.tolist() == [[0, 11, 12], [10, 21, 22], [20, 1, 2]]
    with pytest.raises(ValueError, match="permutation must be long"):
        permute_factor(f, split, "b", torch.tensor([0, 1]))


def test_random_permutation_is_a_seeded_permutation():
    perms = [random_permutation(10, _gen(s)) for s in range(4)]
    assert all(sorted(p.tolist()) == list(range(10)) and p.dtype == torch.long for p in perms)
    assert torch.equal(random_permutation(10, _gen(2)), perms[2])
    assert len({tuple(p.tolist()) for p in perms}) > 1
    with pytest.raises(ValueError, match="n must be >= 0"):
        random_permutation(-1, _gen(0))


def test_cycle_loss_hand_worked():
    # |[1, 3] - [0, 1]| = [1, 2]; |[2, 2] - [2, 0]| = [0, 2]; mean = 5 / 4
    f_star = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    f_cycled = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    assert cycle_loss(f_star, f_cycled).item() == 1.25
    with pytest.raises(ValueError, match="must match"):
        cycle_loss(f_star, f_cycled[:1])


def test_cycle_loss_target_is_detached():
    split = FactorSplit((1, 2), ("a", "b"))
    f = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    f_star = permute_factor(f, split, "b", torch.tensor([1, 0]))
    # a stand-in round trip I(f*) = 2 f*: the loss is mean |2 f* - sg(f*)| = mean |f*| here,
    # d/df* = 2 sign(f*) / 6 through f_cycled only (1 sign(f*) / 6 if the target were not
    # detached); every entry of f is positive and reaches exactly one entry of f*
    cycle_loss(f_star, 2 * f_star).backward()
    assert torch.allclose(f.grad, torch.full((2, 3), 2 / 6))
    # a leaf target gets no gradient at all, the cycled codes do
    target = torch.zeros(2, 3, requires_grad=True)
    cycled = torch.ones(2, 3, requires_grad=True)
    cycle_loss(target, cycled).backward()
    assert target.grad is None
    assert torch.allclose(cycled.grad, torch.full((2, 3), 1 / 6))
