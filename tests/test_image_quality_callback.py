"""LogImageQuality through real Lightning validate/test/fit runs, against per-image references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from image_quality_reference import image_pairs, reference_ms_ssim, skimage_psnr, skimage_ssim
from lightning import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from pytorch_msssim import ms_ssim as msssim_reference
from test_auroc_callback import make_trainer
from test_ddp_logging import Shards, assert_same_as_one_process
from torch.utils.data import DataLoader, TensorDataset

from callbacks.image_quality import ImageQuality, LogImageQuality

# uneven batch sizes (sum 8) so accumulation over batches of different B is exercised
BATCHES = [3, 1, 4]


def colour_pairs(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """8 colour images: the random and structured families (no image equal to its target)."""
    pairs = image_pairs(3, size, size)
    preds = torch.cat([pairs["random"][0], pairs["structured"][0]])
    target = torch.cat([pairs["random"][1], pairs["structured"][1]])
    return preds, target


def loader(preds: torch.Tensor, target: torch.Tensor, batches: list[int] | None = None):
    dataset = TensorDataset(preds, target)
    if batches is None:
        return DataLoader(dataset, batch_size=4)
    bounds = np.cumsum([0, *batches])
    index = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return DataLoader(dataset, batch_sampler=index)


class Reconstructs(LightningModule):
    """Returns the batch's stored (preds, target) images as the step outputs."""

    evaluation_outputs = ("preds", "target_images")

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return self.weight * batch[0].mean()

    def validation_step(self, batch, batch_idx):
        preds, target = batch
        return {"preds": preds, "target_images": target}

    test_step = validation_step

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def run(tmp_path, callback, stage, data, module=Reconstructs) -> tuple[dict[str, float], list[str]]:
    """``trainer.<stage>`` of ``module``: the logged values and every warning's text."""
    trainer = make_trainer(tmp_path, [callback])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(trainer, stage)(module(), data, verbose=False)
    return {k: v.item() for k, v in trainer.callback_metrics.items()}, [
        str(w.message) for w in caught
    ]


def test_validate_logs_per_image_means_over_uneven_batches(tmp_path):
    preds, target = colour_pairs()
    callback = LogImageQuality()
    logged, caught = run(tmp_path, callback, "validate", loader(preds, target, BATCHES))
    assert logged["val/ssim"] == pytest.approx(skimage_ssim(preds, target).mean(), abs=1e-5)
    per_image_psnr = skimage_psnr(preds, target).mean()
    assert logged["val/psnr"] == pytest.approx(per_image_psnr, abs=1e-6)
    pooled = 10 * math.log10(1 / float(((preds.double() - target.double()) ** 2).mean()))
    assert abs(pooled - per_image_psnr) > 0.05  # the per-image mean is not the pooled PSNR
    expected_ms = reference_ms_ssim(preds, target, 1.0, 3).mean()
    assert logged["val/ms_ssim"] == pytest.approx(expected_ms, abs=1e-6)
    assert logged["val/ms_ssim_scales"] == 3
    # one warning, one line, for the image size (not one per batch)
    (note,) = [text for text in caught if "scales" in text]
    assert "64 x 64 px images uses 3 of 5 scales" in note and "\n" not in note
    assert callback.last["val"]["count"] == 8


def test_five_scales_on_large_images_equal_pytorch_msssim_without_a_warning(tmp_path):
    preds, target = colour_pairs(176)
    preds, target = preds[::4], target[::4]  # one random and one structured image
    logged, caught = run(tmp_path, LogImageQuality(), "test", loader(preds, target))
    theirs = msssim_reference(preds.double(), target.double(), data_range=1.0, size_average=False)
    assert logged["test/ms_ssim"] == pytest.approx(theirs.mean().item(), abs=1e-5)
    assert logged["test/ms_ssim_scales"] == 5
    assert not [text for text in caught if "scales" in text]


def test_identical_images_make_psnr_inf_with_a_warning(tmp_path):
    preds, target = image_pairs(1)["constant"]  # image 0 equals its target
    callback = LogImageQuality()
    logged, caught = run(tmp_path, callback, "test", loader(preds, target, [1, 3]))
    expected = skimage_psnr(preds, target)
    assert expected[0] == math.inf  # as scikit-image gives
    assert logged["test/psnr"] == math.inf
    assert callback.last["test"]["psnr_finite"] == pytest.approx(expected[1:].mean(), abs=1e-6)
    (note,) = [text for text in caught if "PSNR +inf" in text]
    assert "1 of 4 images equal their target" in note
    assert f"{expected[1:].mean():.4f} dB" in note
    assert logged["test/ssim"] == pytest.approx(skimage_ssim(preds, target).mean(), abs=1e-5)


def test_data_range_is_explicit(tmp_path):
    preds, target = colour_pairs()
    preds, target = preds * 255, target * 255
    logged, _ = run(tmp_path, LogImageQuality(data_range=255.0), "validate", loader(preds, target))
    assert logged["val/psnr"] == pytest.approx(skimage_psnr(preds, target, 255).mean(), abs=1e-6)
    assert logged["val/ssim"] == pytest.approx(skimage_ssim(preds, target, 255).mean(), abs=1e-5)
    # 0-255 images with the default data_range (1.0) are refused, not scored
    with pytest.raises(ValueError, match=r"span \[.*\], more than data_range=1;"):
        run(tmp_path, LogImageQuality(), "validate", loader(preds, target))
    with pytest.raises(ValueError, match="data_range must be a finite number > 0"):
        LogImageQuality(data_range=0)


def test_images_smaller_than_the_window_are_refused(tmp_path):
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="at least 11 x 11 px .* got 8 x 8"):
        run(tmp_path, LogImageQuality(), "validate", loader(images, images))


class PredsOnly(Reconstructs):
    evaluation_outputs = ("preds",)


def test_module_without_target_images_is_refused_at_setup(tmp_path):
    preds, target = colour_pairs()
    with pytest.raises(ValueError, match=r"\['target_images'\].*evaluation_outputs lists only"):
        run(tmp_path, LogImageQuality(), "validate", loader(preds, target), PredsOnly)


def test_fit_skips_the_sanity_check_and_a_checkpoint_can_monitor_psnr(tmp_path):
    preds, target = colour_pairs()
    callback = LogImageQuality()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/psnr", mode="max")
    one_epoch = {"max_epochs": 1, "limit_train_batches": 1, "num_sanity_val_steps": 2}
    trainer = make_trainer(tmp_path, [callback, checkpoint], enable_checkpointing=True, **one_epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Reconstructs(), loader(preds, target), loader(preds, target, BATCHES))
    assert callback.last["val"]["count"] == 8  # the two sanity batches are not counted
    expected = skimage_psnr(preds, target).mean()
    assert checkpoint.best_model_score.item() == pytest.approx(expected, abs=1e-6)


def test_states_add_up_across_holders():
    preds, target = colour_pairs()
    whole, first, second = ImageQuality(), ImageQuality(), ImageQuality()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole.update(preds, target)
        first.update(preds[:3], target[:3])
        second.update(preds[3:], target[3:])
    first.merge_state(second)
    merged, expected = first.compute(), whole.compute()
    assert merged.keys() == expected.keys()
    for name, value in expected.items():
        assert merged[name].item() == pytest.approx(value.item(), rel=1e-12), name
    assert expected["count"].item() == 8


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_log_what_one_process_logs(tmp_path):
    """Two gloo processes with uneven shares (4 and 3 images, batches of 2) against one."""
    preds, target = colour_pairs(32)
    items = list(zip(preds[:7], target[:7], strict=True))
    alone = assert_same_as_one_process(
        tmp_path, Reconstructs, Shards(items), "validate", lambda: [LogImageQuality()], rel=1e-12
    )
    expected = skimage_ssim(preds[:7], target[:7]).mean()
    assert alone["val/ssim"] == pytest.approx(expected, abs=1e-5)
    assert alone["val/psnr"] == pytest.approx(skimage_psnr(preds[:7], target[:7]).mean(), abs=1e-6)
    assert alone["val/ms_ssim_scales"] == 2
