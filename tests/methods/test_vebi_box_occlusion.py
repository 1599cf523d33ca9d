"""VEBI's box-occlusion study: where the patches go, when it stops, the score on a stub net with
known probabilities, and that occluding a planted classifier's evidence costs it confidence."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_modules.vebi.box_occlusion import box_occlusion, patch_side


class Brightness(nn.Module):
    """Two classes with probabilities (m, 1 - m) (up to 1e-9), m the mean pixel value: on a
    white image occluded with black, p_t(class 0) = 1 - the occluded fraction."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = images.mean((1, 2, 3)).double()
        return torch.stack([(m + 1e-9).log(), (1 - m + 1e-9).log()], 1)


class Corner(nn.Module):
    """Class 1's logit is 8 x the mean of the top-left 8x8 block, class 0's is 2."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        evidence = 8 * images[:, :, :8, :8].mean((1, 2, 3))
        return torch.stack([torch.full_like(evidence, 2.0), evidence], 1)


def test_patch_side_is_an_eighth_of_the_side():
    assert [patch_side(s) for s in (64, 28, 16, 12, 4)] == [8, 4, 2, 2, 1]


def test_a_heatmap_in_one_corner_places_the_first_patch_there():
    images = torch.ones(2, 1, 32, 32)
    heatmaps = torch.zeros(2, 32, 32)
    heatmaps[0, :2, :2] = 1.0  # mass in the top-left corner
    heatmaps[1, 31, 31] = 1.0  # all mass on the last pixel
    trace = box_occlusion(Brightness(), images, heatmaps, torch.zeros(1), seed=3)
    first = trace.centres[:, 0]
    assert first[0].tolist() in ([0, 0], [0, 1], [1, 0], [1, 1])
    assert first[1].tolist() == [31, 31]
    # side 4, centre 31: rows and cols 29..32, clipped to 29..31 -> 9 pixels
    assert trace.occluded[1, 0].item() == pytest.approx(9 / 1024)
    # without replacement: no later centre falls on an occluded pixel of its image
    for b in range(2):
        seen = torch.zeros(32, 32, dtype=torch.bool)
        for row, col in trace.centres[b].tolist():
            if row < 0:
                break
            assert not seen[row, col]
            seen[max(0, row - 2) : row + 2, max(0, col - 2) : col + 2] = True


def test_the_study_stops_at_thirty_percent_and_scores_the_mean_drop():
    # 16x16 image, 2x2 patches; the mass sits on the 64 pixels (odd row, odd col), each of which
    # centres a patch (rows r-1..r, cols c-1..c) that no other one overlaps, so every step
    # occludes 4 new pixels in any order. 19 patches are 76/256 = 29.7%, 20 are 31.25%: 20 steps.
    heatmap = torch.zeros(16, 16)
    heatmap[1::2, 1::2] = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    images = torch.ones(3, 1, 16, 16)
    trace = box_occlusion(Brightness(), images, heatmap.expand(3, -1, -1), torch.zeros(1))
    assert trace.probs.shape == (3, 20)
    steps = torch.arange(1, 21, dtype=torch.float64)
    torch.testing.assert_close(trace.occluded, (4 * steps / 256).expand(3, -1))
    torch.testing.assert_close(trace.probs.double(), (1 - 4 * steps / 256).expand(3, -1))
    # score = mean_t (p0 - p_t) = mean_t 4t/256 = (21/2) / 64
    torch.testing.assert_close(trace.scores(), torch.full((3,), 21 / 128))


def test_images_stop_on_their_own_in_one_batch():
    # image 0's mass on one pixel -> after the first patch the draws are uniform; image 1 as the
    # tiling above. Both stop at >= 30%, and their steps after that are empty (NaN).
    images = torch.ones(2, 1, 16, 16)
    heatmaps = torch.zeros(2, 16, 16)
    heatmaps[0, 8, 8] = 1.0
    heatmaps[1, 1::2, 1::2] = 1.0
    trace = box_occlusion(Brightness(), images, heatmaps, torch.zeros(1), seed=1)
    for b in range(2):
        done = ~trace.occluded[b].isnan()
        steps = int(done.sum())
        assert done[:steps].all() and not done[steps:].any()
        assert trace.occluded[b, steps - 1] >= 0.3
        assert steps == 1 or trace.occluded[b, steps - 2] < 0.3
        assert (trace.centres[b, steps:] == -1).all()
    assert int((~trace.occluded[1].isnan()).sum()) == 20


def test_the_study_is_deterministic_given_a_seed():
    images = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    heatmaps = torch.rand(4, 24, 24, generator=torch.Generator().manual_seed(1))
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 22 * 22, 3))
    runs = [box_occlusion(net, images, heatmaps, images.mean((0, 2, 3)), seed=s) for s in (5, 5)]
    assert torch.equal(runs[0].centres, runs[1].centres)
    torch.testing.assert_close(runs[0].probs, runs[1].probs, rtol=0, atol=0, equal_nan=True)
    other = box_occlusion(net, images, heatmaps, images.mean((0, 2, 3)), seed=6)
    assert not torch.equal(other.centres, runs[0].centres)


def test_occluding_the_evidence_drops_confidence_more_than_occluding_background():
    generator = torch.Generator().manual_seed(0)
    images = 0.5 * torch.rand(8, 1, 32, 32, generator=generator)
    images[:, :, :8, :8] = 1.0  # the evidence for class 1
    fill = torch.zeros(1)
    evidence = torch.zeros(8, 32, 32)
    evidence[:, :8, :8] = 1.0
    background = torch.zeros(8, 32, 32)
    background[:, 16:, 16:] = 1.0
    net = Corner()
    on_evidence = box_occlusion(net, images, evidence, fill, seed=0)
    on_background = box_occlusion(net, images, background, fill, seed=0)
    assert (on_evidence.classes == 1).all()
    p0 = 1 / (1 + math.exp(2 - 8))  # softmax of (2, 8)
    torch.testing.assert_close(on_evidence.p0, torch.full((8,), p0))
    # occluding the background leaves the logits unchanged; occluding the evidence removes it
    torch.testing.assert_close(on_background.scores(), torch.zeros(8), atol=1e-6, rtol=0)
    assert (on_evidence.scores() > 0.3).all()
