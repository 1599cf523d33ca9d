"""The mu-lasso benchmark: its CUB-like data are real x vectors and labels, and a tiny CPU run."""

from __future__ import annotations

import torch

from benchmarks import vebi_lasso


def test_cub_like_problem_has_the_x_vector_structure():
    blocks = (3, 5, 8)
    A, B = vebi_lasso.cub_like_problem(40, blocks, classes=4, seed=1)
    assert A.shape == (40, 16) and B.shape == (40, 4)
    assert (A >= 0).all()
    for block in A.split(blocks, dim=1):  # each layer's block is L1-normalised
        torch.testing.assert_close(block.sum(1), torch.ones(40))
    assert torch.equal(B.sum(1), torch.ones(40)) and B.sum(0).tolist() == [10.0] * 4


def test_times_a_tiny_problem_on_the_cpu():
    A, B = vebi_lasso.cub_like_problem(60, (4, 8, 20), classes=3)
    row = vebi_lasso.time_mu_lasso(A, B, "cpu", mu=2.0, form="direct")  # tens of steps
    assert row["form"] == "direct" and row["converged"] == 3
    assert row["seconds"] > 0 and row["most_steps"] >= row["mean_steps"] > 0
    assert vebi_lasso.time_mu_lasso(A, B, "cpu", 2.0, "auto")["form"] == "gram"  # m < n here
