"""The ISTRC edit benchmark at a tiny scale: what it prints, batched edits equal to single ones,
the spec's full-size networks, its flags."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks import bench_istrc_edit as bench

TINY = bench.Sizes(
    latent_dim=16,
    classifier_width=16,
    classifier_depth=3,
    mapping_width=16,
    code_size=8,
    filters=4,
    image_size=16,
)
STEPS = 20  # two steps a snapshot


def test_prints_both_measurements_with_the_machine(capsys):
    threads = torch.get_num_threads()
    try:
        argv = ["--repeats", "2", "--single-count", "2", "--batch", "3", "--threads", "1"]
        results = bench.main(argv, sizes=TINY, steps=STEPS)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert results["images"] == 10 and results["batch_images"] == 30
    assert results["batch"] == 3 and results["single_count"] == 2
    assert results["batch_ratio"] == pytest.approx(
        results["single_face_s"] / results["batch_face_s"]
    )
    assert results["max_latent_difference"] < 1e-5
    assert f"CPU {bench.cpu_model()} (" in out and f"torch {torch.__version__}, 1 intra-op" in out
    assert "20 steps, 10 images of 16 px; C_a of Attractive (3 Linear layers" in out
    assert "one transformation (median of 2)" in out and "paper 25 s on its CPU" in out
    assert "batch of 3 faces in one call (30 images decoded in 10 calls of 3)" in out
    assert "(2 timed one after another, their mean standing for all 3)" in out
    assert f"{results['batch_ratio']:.1f}x; target at least 20x" in out
    assert "edit path alone per face" in out and "load average" in out


def test_a_batch_transforms_each_face_as_it_would_alone():
    nets = bench.build_networks(TINY)
    z0 = bench.unit_latents(3, TINY.latent_dim, seed=1)
    batch = bench.transform(nets, z0, STEPS)
    assert batch.images.shape == (30, 3, 16, 16)  # snapshot-major: snapshot s, face i at 3s + i
    for i in range(3):
        alone = bench.transform(nets, z0[i : i + 1], STEPS)
        assert alone.images.shape == (10, 3, 16, 16)
        assert torch.allclose(batch.final[i], alone.final[0], atol=1e-6)
        assert torch.allclose(batch.images[i::3], alone.images, atol=1e-5)
    assert batch.edit_s > 0 and batch.decode_s > 0


def test_the_default_networks_are_the_spec_full_size_ones():
    nets = bench.build_networks(bench.FULL_SIZE)
    linears = [m for m in nets.classifier.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 7 and {m.out_features for m in linears[:-1]} == {256}
    assert linears[0].in_features == 128 and linears[-1].out_features == 1
    widths = [m.out_features for m in nets.mapping.modules() if isinstance(m, nn.Linear)]
    assert widths == [512, 512, 512, 512, 64]
    assert not any(m.training for m in (nets.classifier, nets.mapping, nets.decoder))
    with torch.no_grad():
        assert nets.decoder(torch.zeros(1, 64)).shape == (1, 3, 64, 64)
    assert nets.decoder.filters == 128


@pytest.mark.parametrize("flag", ["--batch", "--repeats", "--single-count", "--threads"])
def test_counts_below_one_are_argument_errors(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([flag, "0"], sizes=TINY, steps=STEPS)
    assert exit_info.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err
