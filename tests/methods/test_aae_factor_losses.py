"""The disentangled AAE's Stage B loss pieces: factor split, triplets and miners, cycle edit.

Values are checked against numbers worked out in comments and against numpy loops; the miners
against their rules on every returned row, coverage of the valid anchors and seeded determinism.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.disentangled_aae.cycle import (
    cycle_loss,
    permute_factor,
    random_permutation,
)
from lightning_modules.disentangled_aae.factor_losses import LABEL_KEYS, factor_loss, pose_loss
from lightning_modules.disentangled_aae.factor_split import FactorSplit
from lightning_modules.disentangled_aae.triplets import (
    expression_triplets,
    identity_triplets,
    style_triplets,
    triplet_loss,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rows(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


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


# --- triplet loss ---------------------------------------------------------------------------


def test_triplet_loss_hand_worked_1d():
    # margin 1, 1-d sub-vectors:
    # a=0, p=1, n=3: 1 - 9 + 1 = -7 -> 0   (hinge inactive)
    # a=0, p=2, n=1: 4 - 1 + 1 = 4         (active)
    # a=0, p=0.5, n=1: 0.25 - 1 + 1 = 0.25 (active, inside the margin)
    # mean over the 3 anchors: (0 + 4 + 0.25) / 3 = 1.41666...
    a = _rows([[0.0], [0.0], [0.0]])
    p = _rows([[1.0], [2.0], [0.5]])
    n = _rows([[3.0], [1.0], [1.0]])
    assert triplet_loss(a, p, n).item() == pytest.approx(4.25 / 3, abs=1e-12)
    # margin 0: only the second stays positive: (4 - 1) / 3 = 1
    assert triplet_loss(a, p, n, margin=0.0).item() == pytest.approx(1.0, abs=1e-12)


def test_triplet_loss_is_squared_not_plain_distance_2d():
    # a=(0,0), p=(1,1): ||a-p||^2 = 2 (plain distance sqrt 2); n=(1,0): ||a-n||^2 = 1
    # margin 0.5: 2 - 1 + 0.5 = 1.5  (plain distances would give 1.414 - 1 + 0.5 = 0.914)
    loss = triplet_loss(_rows([[0, 0]]), _rows([[1, 1]]), _rows([[1, 0]]), margin=0.5)
    assert loss.item() == pytest.approx(1.5, abs=1e-12)


def test_triplet_loss_gradient_hand_worked():
    # active a=0, p=2, n=1 (one triplet): d/da = 2(a-p) - 2(a-n) = -4 + 2 = -2,
    # d/dp = -2(a-p) = 4, d/dn = 2(a-n) = -2
    a, p, n = (_rows([[v]]).requires_grad_() for v in (0.0, 2.0, 1.0))
    triplet_loss(a, p, n).backward()
    assert (a.grad.item(), p.grad.item(), n.grad.item()) == (-2.0, 4.0, -2.0)
    # inactive a=0, p=1, n=3: no gradient anywhere
    a, p, n = (_rows([[v]]).requires_grad_() for v in (0.0, 1.0, 3.0))
    triplet_loss(a, p, n).backward()
    assert (a.grad.item(), p.grad.item(), n.grad.item()) == (0.0, 0.0, 0.0)


def _numpy_triplet(a: np.ndarray, p: np.ndarray, n: np.ndarray, margin: float) -> float:
    total = 0.0
    for i in range(a.shape[0]):
        d_pos = sum((a[i, j] - p[i, j]) ** 2 for j in range(a.shape[1]))
        d_neg = sum((a[i, j] - n[i, j]) ** 2 for j in range(a.shape[1]))
        total += max(0.0, d_pos - d_neg + margin)
    return total / a.shape[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_loss_matches_a_numpy_loop(seed):
    rng = np.random.default_rng(seed)
    a, p, n = (rng.normal(size=(17, 5)) * 0.7 for _ in range(3))
    margin = float(rng.uniform(0.5, 2.0))
    expected = _numpy_triplet(a, p, n, margin)
    got = triplet_loss(*(torch.from_numpy(x) for x in (a, p, n)), margin=margin)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert 0.0 < expected  # some hinges are active in these batches


def test_triplet_loss_of_no_triplets_is_zero_with_a_graph():
    part = torch.randn(5, 4, requires_grad=True)
    none = torch.zeros(0, dtype=torch.long)
    loss = triplet_loss(part[none], part[none], part[none])
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(part.grad, torch.zeros(5, 4))


def test_triplet_loss_refuses_bad_input():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="one \\(N, d\\) shape"):
        triplet_loss(x, x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="margin must be >= 0, got -1"):
        triplet_loss(x, x, x, margin=-1.0)


# --- identity miner -------------------------------------------------------------------------


def _identity_batch() -> torch.Tensor:
    # identities 0..6 with 1 to 5 samples each; 5 and 6 are singletons (no positive)
    counts = [5, 4, 3, 2, 2, 1, 1]
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=_gen(123))]


@pytest.mark.parametrize("seed", range(5))
def test_identity_triplets_follow_their_rule_and_cover_every_valid_anchor(seed):
    ident = _identity_batch()
    t = identity_triplets(ident, _gen(seed))
    ids = ident.tolist()
    valid = [i for i in range(len(ids)) if ids.count(ids[i]) >= 2]
    assert t.anchor.tolist() == valid
    for a, p, n in zip(*(x.tolist() for x in t), strict=True):
        assert p != a and ids[p] == ids[a]
        assert ids[n] != ids[a]
    assert all(x.dtype == torch.long for x in t)


def test_identity_triplets_draw_every_candidate_and_are_seeded():
    ident = torch.tensor([0, 0, 0, 0, 1, 2])
    draws = [identity_triplets(ident, _gen(s)) for s in range(60)]
    # anchor 0: positives {1, 2, 3}, negatives {4, 5}: all drawn over 60 seeds
    assert {int(d.positive[0]) for d in draws} == {1, 2, 3}
    assert {int(d.negative[0]) for d in draws} == {4, 5}
    same = identity_triplets(ident, _gen(7))
    assert all(torch.equal(x, y) for x, y in zip(same, draws[7], strict=True))


def test_identity_triplets_without_valid_pairs_are_empty():
    for ident in (torch.tensor([3, 3, 3]), torch.tensor([0, 1, 2]), torch.tensor([4])):
        t = identity_triplets(ident, _gen(0))
        assert [x.numel() for x in t] == [0, 0, 0]


def test_miners_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    identity_triplets(_identity_batch(), _gen(0))
    style_triplets(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1]), _gen(0))
    expression_triplets(
        torch.rand(6, 2, generator=_gen(1)), torch.zeros(6, dtype=torch.long), _gen(0)
    )
    random_permutation(8, _gen(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_miners_refuse_bad_labels():
    with pytest.raises(ValueError, match="identity must be integer labels"):
        identity_triplets(torch.zeros(4), _gen(0))
    with pytest.raises(ValueError, match="one label per sample"):
        style_triplets(torch.zeros(4, dtype=torch.long), torch.zeros(3, dtype=torch.long), _gen(0))
    with pytest.raises(ValueError, match="mode must be"):
        style_triplets(
            torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), _gen(0), "x"
        )
    with pytest.raises(ValueError, match=r"valence_arousal must be \(B, 2\)"):
        expression_triplets(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), _gen(0))
    with pytest.raises(ValueError, match="lambda_l must be >= 0"):
        expression_triplets(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), _gen(0), -0.25)


# --- expression miner -----------------------------------------------------------------------


def _numpy_eq13(va: np.ndarray, cat: np.ndarray, lambda_l: float) -> np.ndarray:
    b = len(cat)
    dist = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            dist[i, j] = (va[i, 0] - va[j, 0]) ** 2 + (va[i, 1] - va[j, 1]) ** 2
            dist[i, j] += lambda_l * (0.0 if cat[i] == cat[j] else 1.0)
    return dist


def test_expression_positive_prefers_the_same_category_hand_worked():
    # anchor 0: (0.5, 0.5) l=0
    #   1: (0.5, 0.9) l=0 -> 0.16 + 0     = 0.16  (nearest with the corrected sign)
    #   2: (0.5, 0.7) l=1 -> 0.04 + 0.25  = 0.29  (nearest if the term pushed same labels apart)
    #   3: (0.0, 0.0) l=2 -> 0.5  + 0.25  = 0.75
    # n = 3 others, k = 1: negatives from ranks [1, 3) = {2, 3}
    va = torch.tensor([[0.5, 0.5], [0.5, 0.9], [0.5, 0.7], [0.0, 0.0]])
    cat = torch.tensor([0, 0, 1, 2])
    negatives = set()
    for seed in range(30):
        t = expression_triplets(va, cat, _gen(seed))
        assert t.anchor.tolist() == [0, 1, 2, 3]
        assert int(t.positive[0]) == 1
        negatives.add(int(t.negative[0]))
    assert negatives == {2, 3}
    # without the category term, 2 is nearer: (0.04 < 0.16)
    assert int(expression_triplets(va, cat, _gen(0), lambda_l=0.0).positive[0]) == 2


@pytest.mark.parametrize("seed", range(4))
def test_expression_triplets_match_a_brute_force_eq13(seed):
    rng = np.random.default_rng(seed)
    b, lambda_l = 11, 0.25
    # coarse (v, a) grid and 3 categories: many exact ties, as with the CelebA proxy labels
    va = rng.integers(0, 3, size=(b, 2)) / 2.0
    cat = rng.integers(0, 3, size=b)
    dist = _numpy_eq13(va, cat, lambda_l)
    n, k = b - 1, (b - 1) // 2
    t = expression_triplets(torch.from_numpy(va), torch.from_numpy(cat), _gen(seed), lambda_l)
    assert t.anchor.tolist() == list(range(b))  # every anchor has a triplet
    for a, p, neg in zip(*(x.tolist() for x in t), strict=True):
        others = np.sort(np.delete(dist[a], a))  # (n,) ascending
        assert p != a and neg != a
        assert dist[a, p] == pytest.approx(others[0], abs=1e-12)  # an argmin of Eq. 13
        assert dist[a, neg] >= others[k] - 1e-12  # in the far half: ranks [k, n)
        assert len(others) == n


def test_expression_negatives_cover_exactly_the_far_half():
    # 1-d valence 0, 1, ..., 6 (scaled), one category: anchor 0's others ranked 1..6 by distance
    # n = 6, k = 3: negatives are ranks 3, 4, 5 = samples 4, 5, 6; the positive is sample 1
    va = torch.stack([torch.arange(7) / 6.0, torch.zeros(7)], dim=1)
    cat = torch.zeros(7, dtype=torch.long)
    seen = {int(expression_triplets(va, cat, _gen(s)).negative[0]) for s in range(60)}
    assert seen == {4, 5, 6}


def test_expression_ties_are_ranked_at_random():
    # all samples equal: every other sample is a nearest one; the pick must not be fixed
    va, cat = torch.full((6, 2), 0.5), torch.zeros(6, dtype=torch.long)
    positives = {int(expression_triplets(va, cat, _gen(s)).positive[0]) for s in range(40)}
    assert positives == {1, 2, 3, 4, 5}


def test_expression_triplets_need_three_samples():
    # B = 3: n = 2, k = 1: the positive is the nearer, the negative the farther other sample
    va = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0]])
    t = expression_triplets(va, torch.zeros(3, dtype=torch.long), _gen(0))
    assert t.positive.tolist() == [1, 0, 1] and t.negative.tolist() == [2, 2, 0]
    for b in (1, 2):
        t = expression_triplets(torch.zeros(b, 2), torch.zeros(b, dtype=torch.long), _gen(0))
        assert [x.numel() for x in t] == [0, 0, 0]


def test_expression_triplets_are_seeded():
    va = torch.rand(20, 2, generator=_gen(5))
    cat = torch.randint(0, 4, (20,), generator=_gen(6))
    first, again = (expression_triplets(va, cat, _gen(3)) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    negatives = {tuple(expression_triplets(va, cat, _gen(s)).negative.tolist()) for s in range(5)}
    assert len(negatives) > 1


# --- style miner ----------------------------------------------------------------------------

# 2 persons x 2 clips x 2 frames; clip ids repeat across persons (a clip is (person, clip))
PERSON = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
CLIP = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
#: sample -> the other frame of its clip; the two frames of its person's other clip
OTHER_FRAME = [1, 0, 3, 2, 5, 4, 7, 6]
OTHER_CLIP = [{2, 3}, {2, 3}, {0, 1}, {0, 1}, {6, 7}, {6, 7}, {4, 5}, {4, 5}]


def test_style_same_clip_pos_on_a_hand_made_batch():
    negatives = [set() for _ in range(8)]
    for seed in range(30):
        t = style_triplets(PERSON, CLIP, _gen(seed))
        assert t.anchor.tolist() == list(range(8))
        assert t.positive.tolist() == OTHER_FRAME
        for a, n in zip(t.anchor.tolist(), t.negative.tolist(), strict=True):
            negatives[a].add(n)
    assert negatives == OTHER_CLIP  # both frames drawn, never the other person


def test_style_literal_exchanges_the_roles():
    positives = [set() for _ in range(8)]
    for seed in range(30):
        t = style_triplets(PERSON, CLIP, _gen(seed), mode="literal")
        assert t.anchor.tolist() == list(range(8))
        assert t.negative.tolist() == OTHER_FRAME
        for a, p in zip(t.anchor.tolist(), t.positive.tolist(), strict=True):
            positives[a].add(p)
    assert positives == OTHER_CLIP


@pytest.mark.parametrize("mode", ["same_clip_pos", "literal"])
def test_style_triplets_on_a_ragged_batch(mode):
    # person 0: clip 0 has 3 frames, clip 1 has 1 frame; person 1: one clip of 2 frames;
    # person 2: clips 0 and 1 with 2 frames each
    person = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    clip = torch.tensor([0, 0, 0, 1, 5, 5, 0, 0, 1, 1])
    t = style_triplets(person, clip, _gen(0), mode=mode)
    p_, c_ = person.tolist(), clip.tolist()
    # valid anchors need another frame of the same clip and another clip of the same person:
    # 0-2 (sample 3's clip has a single frame; person 1 has one clip), 6-9
    assert t.anchor.tolist() == [0, 1, 2, 6, 7, 8, 9]
    same_clip, other_clip = (
        (t.positive, t.negative)
        if mode == "same_clip_pos"
        else (
            t.negative,
            t.positive,
        )
    )
    for a, s, o in zip(t.anchor.tolist(), same_clip.tolist(), other_clip.tolist(), strict=True):
        assert s != a and (p_[s], c_[s]) == (p_[a], c_[a])
        assert p_[o] == p_[a] and c_[o] != c_[a]


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


# --- factor_loss ----------------------------------------------------------------------------


def test_pose_loss_hand_worked():
    # |[0.1, -0.2, 0.3] - 0| and |[1, 1, 1] - [1, 2, 1]| = 0.6 and 1 -> (0.6 + 1) / 6
    pred = _rows([[0.1, -0.2, 0.3], [1.0, 1.0, 1.0]])
    target = _rows([[0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])
    assert pose_loss(pred, target).item() == pytest.approx(1.6 / 6, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        pose_loss(pred, target[:1])


def test_factor_loss_applies_the_mined_triplets():
    ident = _identity_batch()
    part = torch.randn(len(ident), 4, generator=_gen(9), dtype=torch.float64)
    labels = {"identity": ident, "pose": torch.zeros(len(ident), 3)}
    got = factor_loss("identity", part, labels, _gen(4), margin=0.5)
    t = identity_triplets(ident, _gen(4))  # the same draws
    x = part.numpy()
    expected = _numpy_triplet(x[t.anchor], x[t.positive], x[t.negative], 0.5)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_factor_loss_per_factor_labels():
    b = 8
    part = torch.randn(b, 3, generator=_gen(0))
    labels = {
        "pose": part.clone(),
        "identity": PERSON,
        "clip": CLIP,
        "valence_arousal": torch.rand(b, 2, generator=_gen(1)),
        "expression": torch.randint(0, 4, (b,), generator=_gen(2)),
    }
    assert factor_loss("pose", part, labels, _gen(0)).item() == 0.0
    for name in ("identity", "expression", "style"):
        assert factor_loss(name, part, labels, _gen(0)).item() >= 0.0
    assert set(LABEL_KEYS) == {"pose", "identity", "expression", "style"}
    with pytest.raises(ValueError, match=r"missing \['clip'\]"):
        factor_loss("style", part, {"identity": PERSON}, _gen(0))
    with pytest.raises(ValueError, match="unknown factor 'age'"):
        factor_loss("age", part, labels, _gen(0))
    with pytest.raises(ValueError, match="B rows in each label"):
        factor_loss("identity", part[:5], labels, _gen(0))


def test_augmentation_labels_follow_the_permutation():
    # L_aug: row i of the cycled part carries sample perm[i]'s factor, so labels[perm] fit it
    split = FactorSplit()
    f = torch.randn(6, 99, generator=_gen(0))
    poses = split.part(f, "pose").clone()  # a perfect pose code
    perm = random_permutation(6, _gen(1))
    shuffled = split.part(permute_factor(f, split, "pose", perm), "pose")
    assert factor_loss("pose", shuffled, {"pose": poses[perm]}, _gen(0)).item() == 0.0
    assert factor_loss("pose", shuffled, {"pose": poses}, _gen(0)).item() > 0.0


def test_factor_loss_without_triplets_backpropagates_zero():
    part = torch.randn(4, 32, requires_grad=True)
    loss = factor_loss("identity", part, {"identity": torch.arange(4)}, _gen(0))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(part.grad, torch.zeros(4, 32))


# --- on a GPU: the miners run on the device, the expression miner without a host sync -------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_miners_on_cuda_match_cpu_and_expression_does_not_sync():
    va = torch.rand(100, 2, generator=_gen(0))
    cat = torch.randint(0, 4, (100,), generator=_gen(1))
    person = torch.arange(100) // 20
    clip = torch.arange(100) // 5
    cuda = torch.device("cuda")
    cpu_e = expression_triplets(va, cat, _gen(2))
    va_cuda, cat_cuda = va.to(cuda), cat.to(cuda)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu_e = expression_triplets(va_cuda, cat_cuda, _gen(2))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.equal(x.cpu(), y) for x, y in zip(gpu_e, cpu_e, strict=True))
    for mine, args in (
        (identity_triplets, (person,)),
        (style_triplets, (person, clip)),
    ):
        on_gpu = mine(*(a.to(cuda) for a in args), _gen(3))
        assert on_gpu.anchor.device.type == "cuda"
        assert all(
            torch.equal(x.cpu(), y) for x, y in zip(on_gpu, mine(*args, _gen(3)), strict=True)
        )
