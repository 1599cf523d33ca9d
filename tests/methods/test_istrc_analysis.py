"""The computing parts of ISTRC's analysis (``experiments/istrc``), each against an independent
reference: rank-1 retrieval and its chance against a numpy brute force, edit-success counting on
hand-made probabilities, the path checks, the untrained-mapping control, the averages and
arithmetic of the figures against the sphere functions, the Fréchet distance (scipy) and the
choice of its feature space, the metrics.csv readings (M_global windows, k_t range)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from frechet_reference import scipy_frechet

from experiments.istrc.controls import untrained_mapping
from experiments.istrc.directions import direction_name, target_of
from experiments.istrc.edit_scores import edit_success, path_checks, towards
from experiments.istrc.frechet import FEATURE_SPACES, choose_feature_space, feature_frechet
from experiments.istrc.latent_sets import (
    arithmetic_latents,
    arithmetic_rows,
    averages,
    pick_rows,
    raw_mean_norms,
    strip_person,
)
from experiments.istrc.logged import began_numbers, window_mean
from experiments.istrc.retrieval import rank1_retrieval
from lightning_modules.components.pretrained import WeightsNotFoundError
from lightning_modules.istrc.mapping import ISTRCMapping
from lightning_modules.istrc.sphere import arithmetic, normalise, normalised_mean, slerp, slerp_mean


def unit_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    return normalise(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)))


# --- retrieval -----------------------------------------------------------------------------------


def brute_force_retrieval(queries, gallery, query_id, gallery_id):
    """Nearest gallery row by cosine for each query, one at a time (first of ties)."""
    q, g = np.asarray(queries, np.float64), np.asarray(gallery, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    hits = exact = 0
    chance = 0.0
    for i in range(len(q)):
        best, best_sim = -1, -np.inf
        for j in range(len(g)):
            sim = float(q[i] @ g[j])
            if sim > best_sim:
                best, best_sim = j, sim
        hits += int(gallery_id[best] == query_id[i])
        exact += int(best == i)
        chance += sum(int(gallery_id[j] == query_id[i]) for j in range(len(g))) / len(g)
    n = len(q)
    return hits / n, exact / n, chance / n


def test_rank1_retrieval_matches_a_brute_force_loop():
    gallery = unit_rows(40, 8, 0)
    identity = torch.arange(40) % 7  # 7 identities of 5 or 6 images
    queries = gallery + 0.6 * torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    result = rank1_retrieval(queries, gallery, identity, identity)
    hits, exact, chance = brute_force_retrieval(queries, gallery, identity, identity)
    assert result["identity"] == pytest.approx(hits)
    assert result["exact"] == pytest.approx(exact)
    assert result["identity_chance"] == pytest.approx(chance)
    assert result["exact_chance"] == pytest.approx(1 / 40)
    assert result["identity_over_chance"] == pytest.approx(hits / chance)
    assert 0 < exact < 1 and exact <= hits  # the noise moves some queries, not all


def test_rank1_retrieval_hand_case():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    identity = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[0.1, 1.0], [0.9, 0.1], [0.0, -2.0], [1.0, 0.0]])
    result = rank1_retrieval(queries, gallery, identity, identity)
    # nearest: 1 (same id 0, not own), 0 (same id, not own), 3 (same id, not own), 0 (other id)
    assert result["identity"] == 0.75 and result["exact"] == 0.0
    assert result["identity_chance"] == 0.5  # each identity holds half the gallery
    with pytest.raises(ValueError, match="alike"):
        rank1_retrieval(queries[:3], gallery, identity, identity)


# --- edit success --------------------------------------------------------------------------------


def test_edit_success_counts_hand_made_probabilities():
    # four inputs, judge columns: 0 = edited attribute, 1 and 2 = others
    classifier_after = torch.tensor([0.95, 0.5, 0.9, 0.2])
    before = torch.tensor([[0.1, 0.5, 0.5], [0.4, 0.5, 0.5], [0.6, 0.2, 0.2], [0.3, 0.5, 0.5]])
    after = torch.tensor([[0.8, 0.6, 0.5], [0.3, 0.5, 0.5], [0.7, 0.2, 0.0], [0.45, 0.1, 0.5]])
    add = edit_success(classifier_after, before, after, 0, 1, threshold=0.5, others=[1, 2])
    assert add["count"] == 4
    assert add["classifier_success"] == 0.5  # 0.95 and 0.9 reach 0.9
    assert add["judge_raised"] == 0.75  # rows 0, 2, 3
    assert add["judge_flipped"] == 0.25  # only row 0 crosses 0.5 (row 2 was already above)
    assert add["judge_target_before"] == 0.25 and add["judge_target_after"] == 0.5
    assert add["other_mean_abs_delta"] == pytest.approx((0.1 + 0 + 0 + 0 + 0 + 0.2 + 0.4 + 0) / 8)
    assert add["judge_mean_delta"] == pytest.approx((0.7 - 0.1 + 0.1 + 0.15) / 4)
    # the same numbers towards y = 0: probabilities read as 1 - p, "predicts 0" is p < threshold
    remove = edit_success(1 - classifier_after, 1 - before, 1 - after, 0, 0, threshold=0.5)
    for key in ("classifier_success", "judge_raised", "judge_mean_delta"):
        assert remove[key] == pytest.approx(add[key]), key
    # thresholds move what "predicts the target" means, not the other counts
    strict = edit_success(classifier_after, before, after, 0, 1, threshold=0.75)
    assert strict["judge_flipped"] == 0.25 and strict["judge_target_before"] == 0.0
    assert math.isnan(strict["other_mean_abs_delta"])  # no other column given
    assert torch.equal(towards(torch.tensor([0.2]), 0), torch.tensor([0.8]))


def test_edit_success_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="alike"):
        edit_success(torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, 4), 0, 1)
    with pytest.raises(ValueError, match="target"):
        towards(torch.zeros(1), 2)


def test_path_checks_on_a_hand_made_path():
    z0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    angles = torch.tensor([0.001, 0.002, 0.0035], dtype=torch.float64)
    path = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)[:, None]  # (3, 1, 2)
    checks = path_checks(z0, path, 0.0015)
    assert checks["max_norm_error"] < 1e-15
    assert checks["max_step"] == pytest.approx(2 * math.sin(0.0015 / 2))  # the last chord
    assert checks["steps_within"] == 1.0
    assert path_checks(z0, path, 0.001)["steps_within"] == 0.0
    assert path_checks(z0, 1.5 * path, 0.1)["max_norm_error"] == pytest.approx(0.5)


def test_directions_follow_the_spec_table():
    assert (target_of("Young"), direction_name("Young")) == (0, "+older")
    assert (target_of("Narrow_Eyes"), direction_name("Narrow_Eyes")) == (0, "+bigger eyes")
    assert (target_of("No_Beard"), direction_name("No_Beard")) == (1, "-beard")
    assert direction_name("No_Beard", 0) == "No_Beard -> 0"
    assert (target_of("Gray_Hair"), direction_name("Gray_Hair")) == (1, "Gray_Hair -> 1")


# --- the untrained-mapping control ---------------------------------------------------------------


def test_untrained_mapping_is_seeded_fresh_and_leaves_the_global_rng():
    hparams = {"latent_dim": 8, "code_size": 4, "width": 16, "l2_weight": 1e-5, "lr": 1e-3}
    trained = ISTRCMapping(**hparams)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # stands for training
    state = torch.get_rng_state()
    first, again = untrained_mapping(trained.hparams, 3), untrained_mapping(trained.hparams, 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert dict(first.hparams) == dict(trained.hparams) and not first.training
    for (name, a), b, c in zip(
        first.state_dict().items(), again.state_dict().values(), trained.state_dict().values(),
        strict=True,
    ):  # fmt: skip
        assert torch.equal(a, b), name
        if a.is_floating_point() and "running" not in name and a.numel() > 1:
            assert not torch.equal(a, c), name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = ISTRCMapping(**hparams)
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    other = untrained_mapping(trained.hparams, 4)
    assert not torch.equal(other.mapping[0].weight, first.mapping[0].weight)
    bn = [m for m in first.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bn and all(float(m.running_var.mean()) == 1.0 for m in bn)  # never saw a batch


# --- figure inputs: averages, arithmetic, rows ----------------------------------------------------


def test_averages_are_the_sphere_functions():
    q = unit_rows(4, 6, 2)
    result = averages(q)
    assert torch.allclose(result["slerp"], slerp_mean(q))
    assert torch.allclose(result["normalised"], normalised_mean(q))
    assert torch.allclose(result["raw"], q.sum(0) / 4)
    pair = averages(q[:2])
    assert torch.allclose(pair["slerp"], slerp(q[0], q[1], 0.5), atol=1e-6)
    assert torch.allclose(pair["slerp"], normalise(q[0] + q[1]), atol=1e-6)


def test_arithmetic_latents_are_a_minus_b_plus_c():
    z = unit_rows(5, 6, 3)
    result = arithmetic_latents(z, (4, 1, 2))
    assert torch.allclose(result["normalised"], arithmetic(z[4], z[1], z[2]))
    assert torch.allclose(result["raw"], z[4] - z[1] + z[2])
    assert result["normalised"].norm().item() == pytest.approx(1.0, abs=1e-6)


def test_rows_meet_the_label_conditions():
    names = ["Male", "Smiling", "Eyeglasses"]
    # rows: identity, Male, Smiling
    table = [(0, 0, 1), (0, 0, 0), (1, 0, 1), (2, 1, 0), (2, 1, 1), (3, 0, 0)]
    identity = torch.tensor([row[0] for row in table])
    labels = torch.tensor([[row[1], row[2], 0] for row in table])
    rows = pick_rows(labels, names, {"Male": 0, "Smiling": 1}, 10, torch.Generator())
    assert sorted(rows.tolist()) == [0, 2]
    assert pick_rows(labels, names, {"Male": 0, "Smiling": 1}, 1, torch.Generator()).numel() == 1
    with pytest.raises(ValueError, match="no label 'Bald'"):
        pick_rows(labels, names, {"Bald": 1}, 1, torch.Generator())
    conditions = ({"Smiling": 1, "Male": 0}, {"Smiling": 0, "Male": 0}, {"Smiling": 0, "Male": 1})
    for seed in range(5):  # a is row 0 or 2; only row 0's person has a neutral image: b = 1
        a, b, c = arithmetic_rows(
            labels, identity, names, conditions, torch.Generator().manual_seed(seed)
        )
        assert (a, b, c) == (0, 1, 3)
    assert (
        arithmetic_rows(labels, identity, names, ({"Eyeglasses": 1}, {}, {}), torch.Generator())
        is None
    )
    edits = {"Male": 1, "Smiling": 1}  # row 1 and row 5: neither male nor smiling
    person = strip_person(labels, names, edits, torch.Generator())
    assert person in (1, 5)
    assert strip_person(labels, names, edits, torch.Generator(), exclude=[1, 5]) in (0, 2, 3)


def test_raw_mean_norms_shrink_and_start_from_the_rows():
    z = unit_rows(64, 32, 4)
    curve = raw_mean_norms(z, list(range(2, 65)), torch.Generator().manual_seed(0))
    assert curve["n"][0] == 2 and len(curve["faces"]) == len(curve["uniform"]) == 63
    assert curve["faces"][-1] == pytest.approx(z.mean(0).norm().item(), rel=1e-5)  # all 64 rows
    assert curve["uniform"][-1] < 0.5 and curve["faces"][0] <= 1.0
    with pytest.raises(ValueError, match="need as many latents"):
        raw_mean_norms(z[:10], [2, 11], torch.Generator())


# --- Fréchet distance ---------------------------------------------------------------------------


def test_feature_frechet_matches_scipy():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64)
    b = torch.randn(200, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3
    expected = scipy_frechet(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))
    assert feature_frechet(a, b) == pytest.approx(expected, rel=1e-8)
    assert feature_frechet(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="one d"):
        feature_frechet(a, b[:, :5])


def test_feature_space_choice(tmp_path):
    space, note = choose_feature_space("auto", None)
    assert space == "judge" and "not comparable with Inception FID" in note
    assert FEATURE_SPACES[space] == "FID (judge features)"
    weights = tmp_path / "inception.pth"
    assert choose_feature_space("auto", weights)[0] == "inception"
    assert choose_feature_space("inception", weights)[0] == "inception"
    assert choose_feature_space("judge", weights)[0] == "judge"
    with pytest.raises(WeightsNotFoundError):
        choose_feature_space("inception", None)
    with pytest.raises(ValueError, match="auto, inception or judge"):
        choose_feature_space("lpips", None)


# --- metrics.csv readings ------------------------------------------------------------------------


def test_began_numbers_from_a_metrics_csv(tmp_path):
    lines = ["epoch,step,train/k_step,train/m_global_step,train/m_global_epoch,test/l1,"
             "test/l1_mean_image"]  # fmt: skip
    for step in range(0, 101, 10):  # two epochs of 50 steps, a value every 10 steps
        m = 1.0 - step / 200
        lines.append(f"{step // 51},{step},{step / 1000},{m},,,")
    lines += ["0,50,,,0.9,,", "1,100,,,0.8,,", "1,100,,,,0.3,0.6"]
    path = tmp_path / "metrics.csv"
    path.write_text("\n".join(lines) + "\n")
    numbers = began_numbers(path)
    assert numbers["l1_ratio"] == pytest.approx(0.5)
    assert (numbers["k_min"], numbers["k_max"]) == (0.0, 0.1)
    assert numbers["m_global_reading"] == "step windows"
    assert numbers["m_global_at_10pct"] == pytest.approx(1.0 - 10 / 200)  # steps 5..15: step 10
    assert numbers["m_global_final"] == pytest.approx((0.55 + 0.5) / 2)  # steps 90 and 100
    assert numbers["m_global_epoch_at_10pct"] == 0.8  # first epoch index >= 0.2: epoch 1
    assert numbers["m_global_epoch_final"] == 0.8
    assert window_mean([0, 100], [1.0, 3.0], 0.4, 0.45) == 1.0  # none inside: the nearest
    assert math.isnan(window_mean([], [], 0.0, 1.0))


def test_judge_features_are_the_input_of_its_last_linear_layer():
    from experiments.istrc.stages import Judge
    from lightning_modules.face_attributes import FaceAttributeClassifier

    torch.manual_seed(0)
    model = FaceAttributeClassifier(
        "latentlab/vgg", num_attributes=3, model_kwargs={"widths": [4, 8]}, weight_mode="none"
    ).eval()
    judge = Judge(model, ["a", "b", "c"], torch.full((3,), 0.5), "0.5", torch.device("cpu"))
    images = torch.rand(5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = model.model.trunk(images).mean(dim=(-2, -1))
        logits = model(images)
    assert torch.allclose(judge.features(images), expected, atol=1e-6)
    assert torch.allclose(judge.probs(images), logits.sigmoid(), atol=1e-6)
    assert judge.features(images[:2]).shape == (2, 8)  # the hook is gone after each call
    assert not model.model.head._forward_pre_hooks


def test_the_command_names_a_missing_stage_run(tmp_path, capsys):
    from experiments.istrc.analyze import main, parse_args

    assert main(["--root", str(tmp_path), "--device", "cpu", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "--encoder istrc/synthetic_encoder" in error and "make experiment" in error
    options = parse_args(["--root", "r", "--edit-attributes", "Male", "Young", "--steps", "100"])
    assert options.edit_attributes == ["Male", "Young"] and options.steps == 100
    assert options.classifiers_shuffled == "istrc/synthetic_classifiers_shuffled"
    assert main(["--root", str(tmp_path), "--steps", "100", "--every", "30"]) == 2
    assert "--every 30 must divide --steps 100" in capsys.readouterr().err
