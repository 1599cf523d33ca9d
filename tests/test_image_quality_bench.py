"""The SSIM benchmark runs on a few images and reports equal results beside its ratio."""

from __future__ import annotations

from benchmarks.bench_ssim import main


def test_bench_ssim_reports_a_ratio_with_equal_results(capsys):
    results = main(
        ["--num-images", "6", "--size", "32", "--batch-size", "4", "--skimage-images", "3"]
    )
    out = capsys.readouterr().out
    assert results["skimage_images"] == 3  # two batches: 2 + 1 images
    assert results["max_difference"] < 1e-10
    assert abs(results["torch_mean"] - results["metric_ssim"]) < 1e-12
    assert "extrapolated per image from 3 images" in out and "ratio (scikit-image / torch)" in out
