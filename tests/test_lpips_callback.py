"""LogLPIPS through real Lightning runs, against lpips.LPIPS per image on the same weights."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_ddp_logging import Shards, assert_same_as_one_process
from test_image_quality_callback import BATCHES, Reconstructs, loader, run
from test_lpips import reference, trunk_file

from callbacks.lpips import LogLPIPS, LPIPSMetric
from lightning_modules.components.lpips import LPIPS


def unit_pairs(n: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` colour image pairs in [0, 1] (targets and noisy predictions of them)."""
    generator = torch.Generator().manual_seed(2)
    target = torch.rand(n, 3, size, size, generator=generator)
    noise = (
        torch.randn(n, 3, size, size, generator=generator)
        * torch.linspace(0.05, 0.4, n)[:, None, None, None]
    )
    return (target + noise).clamp(0, 1), target


def per_image_reference(net: str, path: str, preds, target) -> torch.Tensor:
    with torch.no_grad():
        return reference(net, path)(preds, target, normalize=True).flatten().double()


def test_validate_logs_the_per_image_mean_over_uneven_batches(tmp_path):
    path = trunk_file(tmp_path, "alex")
    preds, target = unit_pairs()
    callback = LogLPIPS("alex", trunk_weights=path)
    logged, _ = run(tmp_path, callback, "validate", loader(preds, target, BATCHES))
    expected = per_image_reference("alex", path, preds, target)
    assert expected.std() > 1e-3  # the images differ in distance, so the mean is a real test
    assert logged["val/lpips"] == pytest.approx(expected.mean().item(), abs=1e-6)
    assert callback.last["val"]["count"] == 8


def test_images_in_minus_one_one(tmp_path):
    path = trunk_file(tmp_path, "vgg")
    preds, target = unit_pairs(2, 32)
    callback = LogLPIPS("vgg", trunk_weights=path, inputs_in_unit_range=False)
    logged, _ = run(tmp_path, callback, "test", loader(preds * 2 - 1, target * 2 - 1))
    expected = per_image_reference("vgg", path, preds, target)
    assert logged["test/lpips"] == pytest.approx(expected.mean().item(), abs=1e-6)


def test_states_add_up_across_holders():
    torch.manual_seed(0)
    network = LPIPS("alex", random_trunk=True, normalize=True)
    preds, target = unit_pairs()
    whole, first, second = LPIPSMetric(network), LPIPSMetric(network), LPIPSMetric(network)
    whole.update(preds[:3], target[:3])  # the same batches: float32 values depend on them
    whole.update(preds[3:], target[3:])
    first.update(preds[:3], target[:3])
    second.update(preds[3:], target[3:])
    first.merge_state(second)
    merged, expected = first.compute(), whole.compute()
    assert merged["count"] == expected["count"] == 8
    assert merged["lpips"].dtype == torch.float64
    assert merged["lpips"].item() == pytest.approx(expected["lpips"].item(), rel=1e-12)


def test_trunk_weights_are_required(tmp_path):
    with pytest.raises(ValueError, match="needs trunk_weights"):
        LogLPIPS("alex")
    with pytest.raises(ValueError, match="floating-point images"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds, target = unit_pairs(2, 32)
            run(
                tmp_path,
                LogLPIPS("alex", random_trunk=True),
                "validate",
                loader((preds * 255).to(torch.uint8), (target * 255).to(torch.uint8)),
            )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_log_what_one_process_logs(tmp_path):
    """Two gloo processes with uneven shares (4 and 3 images, batches of 2) against one."""
    path = trunk_file(tmp_path, "alex")
    preds, target = unit_pairs(7, 32)
    items = list(zip(preds, target, strict=True))
    alone = assert_same_as_one_process(
        tmp_path,
        Reconstructs,
        Shards(items),
        "validate",
        lambda: [LogLPIPS("alex", trunk_weights=path)],
        rel=1e-6,  # per-image float32 values may depend on the batch's other images
    )
    expected = per_image_reference("alex", path, preds, target)
    assert alone["val/lpips"] == pytest.approx(expected.mean().item(), abs=1e-6)
