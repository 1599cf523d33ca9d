"""LogWSOLMetrics and LogCAMOverlay in a Trainer: key checks at setup, the threshold handed over."""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning import LightningDataModule, LightningModule, Trainer
from recording import RecordingLogger
from torch.utils.data import DataLoader

from callbacks.cam_overlay import LogCAMOverlay
from callbacks.keys import BOXES, CAMS, LABEL, LOGITS, MASKS
from callbacks.wsol.callback import LogWSOLMetrics
from callbacks.wsol.metrics import WSOLMetrics

SIZE = 32
GT = torch.tensor([[8, 8, 23, 23]])  # the object: a 16 x 16 square


def _cams(ring: float) -> torch.Tensor:
    """(2, 32, 32) CAMs: 1 on the object, ``ring`` on a wide frame around it, 0 elsewhere.

    Below ``ring`` the CAM box holds the frame (IoU about 0.3), above it the object alone: the
    best MaxBoxAcc threshold moves with ``ring``.
    """
    cams = torch.zeros(2, SIZE, SIZE)
    cams[:, 2:30, 2:30] = ring
    cams[:, 8:24, 8:24] = 1.0
    return cams


class _Localizer(LightningModule):
    """Returns fixed CAMs whose frame value changes with the epoch (0.3, then 0.6)."""

    evaluation_outputs = (CAMS, BOXES, LOGITS, LABEL)

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight**2).sum()

    def validation_step(self, batch, batch_idx):
        cams = _cams(0.3 if self.current_epoch == 0 else 0.6)
        labels = torch.tensor([0, 1])
        return {
            CAMS: cams,
            BOXES: GT[None].repeat(2, 1, 1),
            LOGITS: torch.eye(2),
            LABEL: labels,
        }

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    def collate(items):
        return {"image": torch.zeros(len(items), 3, SIZE, SIZE)}

    return DataLoader(list(range(2)), batch_size=2, collate_fn=collate)


class _MetricsLogger(RecordingLogger):
    """Also records the logged metrics."""

    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self.metric_calls: list[dict] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.metric_calls.append(dict(metrics))


def _trainer(tmp_path, callbacks, epochs: int = 1, logger=None) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )


class _Unreachable(_Localizer):
    def validation_step(self, batch, batch_idx):
        raise AssertionError("setup should have failed before the first step")


@pytest.mark.parametrize(
    ("declared", "top_k_loc", "missing"),
    [
        ((CAMS, LOGITS, LABEL), True, "'boxes' or 'masks'"),
        ((CAMS, BOXES), True, "['label', 'logits']"),
        ((BOXES, MASKS, LOGITS, LABEL), False, "['cams']"),
    ],
)
def test_wsol_metrics_fail_at_setup_naming_the_key(tmp_path, declared, top_k_loc, missing):
    module = _Unreachable()
    module.evaluation_outputs = declared
    trainer = _trainer(tmp_path, [LogWSOLMetrics(image_size=SIZE, top_k_loc=top_k_loc)])
    with pytest.raises(ValueError, match="LogWSOLMetrics") as error:
        trainer.validate(module, dataloaders=_loader(), verbose=False)
    assert missing in str(error.value)


def test_wsol_metrics_fail_on_a_step_without_boxes_or_masks(tmp_path):
    class NoBoxes(_Localizer):
        evaluation_outputs = None  # nothing listed: the step's dict is checked

        def validation_step(self, batch, batch_idx):
            return {CAMS: _cams(0.3), LOGITS: torch.eye(2), LABEL: torch.tensor([0, 1])}

    trainer = _trainer(tmp_path, [LogWSOLMetrics(image_size=SIZE)])
    with pytest.raises(ValueError, match="'boxes' or 'masks'"):
        trainer.validate(NoBoxes(), dataloaders=_loader(), verbose=False)


def test_overlay_fails_at_setup_naming_the_key(tmp_path):
    module = _Unreachable()
    module.evaluation_outputs = (CAMS, LABEL, MASKS)
    overlay = LogCAMOverlay(mean=[0.5] * 3, std=[0.5] * 3)
    with pytest.raises(ValueError, match=r"LogCAMOverlay needs the step outputs \['boxes'\]"):
        _trainer(tmp_path, [overlay]).validate(module, dataloaders=_loader(), verbose=False)


def test_overlay_needs_the_normalization(tmp_path):
    """No mean/std guessed: from the arguments or the DataModule, else an error at setup."""

    class Data(LightningDataModule):
        def val_dataloader(self):
            return _loader()

    overlay = LogCAMOverlay(cam_threshold=0.5)
    with pytest.raises(ValueError, match="mean and std"):
        _trainer(tmp_path, [overlay]).validate(_Unreachable(), Data(), verbose=False)
    with pytest.raises(ValueError, match="both mean and std"):
        LogCAMOverlay(mean=[0.0] * 3)
    Data.image_mean, Data.image_std = (0.0,) * 3, (1.0,) * 3
    logger = RecordingLogger(str(tmp_path))
    trainer = _trainer(tmp_path, [overlay], logger=logger)
    trainer.validate(_Localizer(), Data(), verbose=False)
    (call,) = logger.image_calls
    assert call["key"] == "val/cam_overlay" and call["caption"][0] == "class 0, tau=0.50"
    assert call["images"][0].size == (2 * SIZE, SIZE)  # image | overlay


@pytest.mark.parametrize("overlay_first", [False, True])
def test_overlay_draws_at_the_threshold_logged_in_the_same_epoch(tmp_path, overlay_first):
    """LogWSOLMetrics logs ``val/maxboxacc_threshold``; the overlay reads it from
    ``trainer.callback_metrics`` after every epoch-end hook, whatever the callback order."""
    logger = _MetricsLogger(str(tmp_path))
    callbacks = [
        LogWSOLMetrics(image_size=SIZE),
        LogCAMOverlay(num_images=2, every_n_epochs=1, mean=[0.0] * 3, std=[1.0] * 3),
    ]
    if overlay_first:
        callbacks.reverse()
    trainer = _trainer(tmp_path, callbacks, epochs=2, logger=logger)
    trainer.fit(_Localizer(), train_dataloaders=_loader(), val_dataloaders=_loader())
    logged = [m["val/maxboxacc_threshold"] for m in logger.metric_calls if "val/maxboxacc" in m]
    drawn = [float(c["caption"][0].split("tau=")[1]) for c in logger.image_calls]
    assert len(logged) == len(drawn) == 2
    assert logged[0] != logged[1]  # the frame value moved the best threshold
    assert drawn == pytest.approx(logged, abs=0.005)  # captions round to 2 decimals


def test_overlay_without_a_threshold_fails(tmp_path):
    overlay = LogCAMOverlay(every_n_epochs=1, mean=[0.0] * 3, std=[1.0] * 3)
    with pytest.raises(ValueError, match="'val/maxboxacc_threshold'"):
        _trainer(tmp_path, [overlay]).validate(_Localizer(), dataloaders=_loader(), verbose=False)


def _localization_batch(num: int = 12, size: int = 56) -> dict[str, torch.Tensor]:
    """Blob CAMs (14 x 14), GT boxes near the blobs, masks, logits and labels; seeded."""
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    centre = 2 + 10 * torch.rand(num, 2, 1, 1, generator=generator)
    spread = 2 + 6 * torch.rand(num, 1, 1, generator=generator)
    cams = torch.exp(-((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2) / spread)
    cams = cams + 0.2 * torch.rand(num, 14, 14, generator=generator)
    scale = size / 14
    half = (spread.flatten() * scale).long()
    x, y = (centre[:, 0, 0, 0] * scale).long(), (centre[:, 1, 0, 0] * scale).long()
    boxes = torch.stack([x - half, y - half, x + half, y + half], 1).clamp(0, size - 1)
    masks = torch.zeros(num, size, size, dtype=torch.long)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        masks[i, y0 : y1 + 1, x0 : x1 + 1] = 1
    logits = torch.randn(num, 5, generator=generator)
    labels = torch.randint(0, 5, (num,), generator=generator)
    return {"cams": cams, "boxes": boxes[:, None], "masks": masks, "logits": logits,
            "labels": labels}  # fmt: skip


def _metrics_of_a_part(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    torch.set_num_threads(1)
    batch = _localization_batch()
    metrics = WSOLMetrics(image_size=(56, 56), workers=1)
    metrics.update(**{k: v[rank::world] for k, v in batch.items()})
    values = metrics.compute()
    with open(f"{out}.{rank}", "w") as file:
        json.dump(values, file)
    dist.destroy_process_group()


def test_every_logged_value_is_global_under_ddp(tmp_path):
    """Two gloo processes, each with half the images, log what one process logs on all of them."""
    whole = WSOLMetrics(image_size=(56, 56), workers=1)
    whole.update(**_localization_batch())
    expected = whole.compute()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "values")
    mp.spawn(_metrics_of_a_part, args=(2, port, out), nprocs=2)
    parts = [json.loads((tmp_path / f"values.{rank}").read_text()) for rank in range(2)]
    assert parts[0] == parts[1] == pytest.approx(expected, abs=1e-12)
    alone = WSOLMetrics(image_size=(56, 56), workers=1)
    alone.update(**{k: v[0::2] for k, v in _localization_batch().items()})
    assert alone.compute() != expected  # one half alone would log other values
