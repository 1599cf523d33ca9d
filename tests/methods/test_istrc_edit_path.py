"""ISTRC's semantic transformation (spec "Inference/uses", "Synthetic stand-in" assertion 6, its
geometric part): paths against numpy references for a linear and a quadratic classifier, unit
norm and step length, snapshots, batched rows equal to single-row runs, the classifier left as it
was (no .grad, modes restored), autograd inside no_grad / inference_mode, bad arguments."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn

import lightning_modules.istrc.edit_path as edit_path_module
from lightning_modules.istrc.edit_path import EditPath, semantic_transformation


def unit_rows(n: int, dim: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    rows = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return rows / rows.norm(dim=-1, keepdim=True)


def linear_classifier(w: torch.Tensor, bias: float = 0.0) -> nn.Linear:
    """logit = w . z + bias."""
    classifier = nn.Linear(w.numel(), 1).to(w.dtype)
    with torch.no_grad():
        classifier.weight.copy_(w[None])
        classifier.bias.fill_(bias)
    return classifier


class Quadratic(nn.Module):
    """logit = z^T A z, A symmetric: row i's gradient direction depends on row i."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return ((z @ self.a) * z).sum(dim=-1)


def mlp(dim: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Sequential:
    """A small C_a-like MLP whose training mode would couple rows (BatchNorm, Dropout)."""
    torch.manual_seed(seed)
    layers = nn.Sequential(
        nn.Linear(dim, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1)
    ).to(dtype)
    with torch.no_grad():  # running statistics other than 0 / 1, so eval mode is visible
        layers[1].running_mean.uniform_(-0.5, 0.5)
        layers[1].running_var.uniform_(0.5, 2.0)
    return layers.train()


def numpy_path(z0, step_direction, y, steps, d):
    """z_t (steps, B, D): z <- normalise(z - d g / ||g||), g = (sigmoid(logit) - y) grad logit."""
    z, path = z0.copy(), []
    for _ in range(steps):
        logit, grad_logit = step_direction(z)
        g = (1 / (1 + np.exp(-logit)) - y)[:, None] * grad_logit
        z = z - d * g / np.linalg.norm(g, axis=-1, keepdims=True)
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        path.append(z)
    return np.stack(path)


def test_docstring_examples():
    assert doctest.testmod(edit_path_module, extraglobs={"torch": torch}).failed == 0


@pytest.mark.parametrize("y", [1, 0])
def test_a_linear_classifier_rotates_z_towards_w_by_d_per_step(y):
    """logit = w . z: g is parallel to w, so each step is z <- normalise(z +- d w / ||w||)."""
    w, z0 = 3 * unit_rows(1, 16, 0)[0], unit_rows(3, 16, 1)
    path = semantic_transformation(linear_classifier(w, 0.2), z0, y, steps=200, every=1)
    sign = 1 if y == 1 else -1
    z, w_hat = z0.numpy(), (w / w.norm()).numpy()
    expected = []
    for _ in range(200):
        z = z + sign * 0.002 * w_hat
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        expected.append(z)
    np.testing.assert_allclose(path.snapshots.numpy(), np.stack(expected), atol=1e-12)
    zs = np.concatenate([z0.numpy()[None], np.stack(expected)])
    probabilities = 1 / (1 + np.exp(-(zs @ w.numpy() + 0.2)))
    np.testing.assert_allclose(path.probabilities.numpy(), probabilities, atol=1e-12)
    steps = np.diff(path.probabilities.numpy(), axis=0)
    assert (steps > 0).all() if y == 1 else (steps < 0).all()  # monotonic toward y
    cosine_to_w = path.snapshots.numpy() @ w_hat
    assert (np.diff(cosine_to_w, axis=0) * sign > 0).all()


def test_a_quadratic_classifier_matches_a_numpy_path_row_by_row():
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(8, 8, generator=generator, dtype=torch.float64)
    a = a + a.T
    z0, y = unit_rows(5, 8, 3), torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    path = semantic_transformation(Quadratic(a), z0, y, steps=60, every=20, step_distance=0.01)
    an = a.numpy()
    expected = numpy_path(
        z0.numpy(), lambda z: (np.einsum("bi,ij,bj->b", z, an, z), 2 * z @ an), y.numpy(), 60, 0.01
    )
    np.testing.assert_allclose(path.snapshots.numpy(), expected[19::20], atol=1e-12)
    distances = np.linalg.norm(expected - z0.numpy(), axis=-1)
    np.testing.assert_allclose(path.distances[1:].numpy(), distances, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_z_t_is_unit_and_moves_at_most_d(dtype):
    z0, d = unit_rows(6, 32, 4, dtype), 0.002
    path = semantic_transformation(mlp(32, dtype), z0, 1, steps=100, every=1, step_distance=d)
    zs = torch.cat([z0[None], path.snapshots])  # (101, B, D): z_0 .. z_100
    assert torch.allclose(zs.norm(dim=-1), torch.ones(101, 6, dtype=dtype), atol=1e-6)
    assert ((zs[1:] - zs[:-1]).norm(dim=-1) <= d + 1e-6).all()
    assert torch.allclose(path.distances, (zs - z0).norm(dim=-1), atol=1e-6)
    assert (path.distances[0] == 0).all()


def test_default_snapshots_are_z_50_to_z_500():
    z0, classifier = unit_rows(2, 8, 5, torch.float32), mlp(8, torch.float32)
    path = semantic_transformation(classifier, z0, 1)
    every_step = semantic_transformation(classifier, z0, 1, every=1)
    assert isinstance(path, EditPath)
    assert path.snapshots.shape == (10, 2, 8)
    assert path.probabilities.shape == path.distances.shape == (501, 2)
    assert torch.equal(path.snapshots, every_step.snapshots[49::50])  # z_50, z_100, ..., z_500
    assert torch.equal(path.probabilities, every_step.probabilities)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_a_batch_edits_each_row_as_it_would_alone(dtype, tolerance):
    z0, classifier = unit_rows(4, 16, 6, dtype), mlp(16, dtype, seed=1)  # in train mode
    y = torch.tensor([1, 0, 0, 1])
    batch = semantic_transformation(classifier, z0, y, steps=80, every=20, step_distance=0.01)
    for i in range(4):
        alone = semantic_transformation(classifier, z0[i : i + 1], y[i], 80, 20, 0.01)
        assert torch.allclose(batch.snapshots[:, i], alone.snapshots[:, 0], atol=tolerance)
        assert torch.allclose(batch.probabilities[:, i], alone.probabilities[:, 0], atol=tolerance)
        assert torch.allclose(batch.distances[:, i], alone.distances[:, 0], atol=tolerance)


def test_the_classifier_gets_no_grad_runs_in_eval_mode_and_keeps_its_modes():
    seen = []

    class Recording(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = mlp(8)

        def forward(self, z):
            seen.append((self.training, self.body.training, self.body[1].training))
            return self.body(z)

    classifier = Recording().train()
    classifier.body[3].eval()  # a submodule in its own mode: restored as it was, not to train
    before = [(name, m.training) for name, m in classifier.named_modules()]
    semantic_transformation(classifier, unit_rows(3, 8, 7), 1, steps=5, every=5)
    assert seen and all(modes == (False, False, False) for modes in seen)
    assert [(name, m.training) for name, m in classifier.named_modules()] == before
    assert all(p.requires_grad and p.grad is None for p in classifier.parameters())


def test_modes_are_restored_when_the_classifier_fails():
    classifier = nn.Linear(8, 2).double().train()  # two logits per row: refused
    with pytest.raises(
        ValueError, match=r"classifier must map .* \(3,\) or \(3, 1\), got \(3, 2\)"
    ):
        semantic_transformation(classifier, unit_rows(3, 8, 8), 1, steps=5, every=5)
    assert classifier.training


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_runs_with_autograd_inside_no_grad_and_inference_mode(context):
    classifier, z0 = mlp(8), unit_rows(2, 8, 9)
    expected = semantic_transformation(classifier, z0, 0, steps=20, every=10)
    with context():
        got = semantic_transformation(classifier, z0.clone(), 0, steps=20, every=10)
    assert torch.equal(got.snapshots, expected.snapshots)
    assert torch.equal(got.probabilities, expected.probabilities)


def test_a_zero_gradient_makes_no_step_and_no_nan():
    class Flat(nn.Module):
        def forward(self, z):
            return 0 * z.sum(dim=-1)

    z0 = unit_rows(2, 8, 10)
    path = semantic_transformation(Flat(), z0, 1, steps=4, every=2)
    assert torch.isfinite(path.snapshots).all()
    assert torch.allclose(path.snapshots, z0.expand(2, 2, 8), atol=1e-15)  # renormalised only
    assert (path.distances < 1e-15).all() and (path.probabilities == 0.5).all()


@pytest.mark.parametrize("y", [1, 0])
def test_a_saturated_classifier_keeps_the_walk_going(y):
    """A logit of 1000 z_2 saturates p to y in float32 (BCE's gradient is exactly zero there);
    the walk still moves as it does under the unsaturated logit z_2, whose BCE gradient has the
    same direction: the spec's walk has no early stop."""
    saturated, plain = nn.Linear(3, 1, bias=False), nn.Linear(3, 1, bias=False)
    saturated.weight.data.copy_(torch.tensor([[0.0, 1000.0, 0.0]]))
    plain.weight.data.copy_(torch.tensor([[0.0, 1.0, 0.0]]))
    sign = 1.0 if y == 1 else -1.0
    z0 = torch.tensor([[0.6, 0.8 * sign, 0.0]])  # already far on the target side: p == y
    assert float(torch.sigmoid(saturated(z0))) == float(y)
    path = semantic_transformation(saturated, z0, y, steps=20, every=10, step_distance=0.01)
    reference = semantic_transformation(plain, z0, y, steps=20, every=10, step_distance=0.01)
    assert torch.allclose(path.snapshots, reference.snapshots, atol=1e-6)
    assert bool((path.distances[1:] > path.distances[:-1]).all())  # it moves at every step
    assert float(path.snapshots[-1, 0, 1]) * sign > 0.8  # on along +-e_2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0, "every": 1}, "steps must be >= 1"),
        ({"steps": 10, "every": 0}, "every must be >= 1 and divide steps"),
        ({"steps": 10, "every": 3}, "every must be >= 1 and divide steps"),
        ({"steps": 10, "every": 20}, "every must be >= 1 and divide steps"),
        ({"steps": 10, "every": 5, "step_distance": 0.0}, "step_distance must be > 0"),
        ({"z0": torch.ones(8, dtype=torch.float64)}, r"z0 must be float latents \(B, D\)"),
        ({"z0": torch.ones(3, 8, dtype=torch.long)}, r"z0 must be float latents \(B, D\)"),
        ({"z0": 2 * unit_rows(3, 8, 11)}, "z0 must have unit rows"),
        ({"y": 0.5}, "y must be 0 or 1"),
        ({"y": torch.tensor([1.0, 2.0, 0.0])}, "y must be 0 or 1"),
        ({"y": torch.tensor([1.0, 0.0])}, r"y must be one value or \(3,\)"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    arguments = {"z0": unit_rows(3, 8, 12), "y": 1, "steps": 10, "every": 5} | kwargs
    with pytest.raises(ValueError, match=match):
        semantic_transformation(linear_classifier(unit_rows(1, 8, 13)[0]), **arguments)
