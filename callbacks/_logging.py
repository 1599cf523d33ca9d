"""Send images and figures to every logger that can take them (W&B, TensorBoard, ...).

Duck-typed on purpose: a logger with ``log_image`` (W&B) gets the images with captions; one whose
``experiment`` has ``add_image`` (TensorBoard) gets them one by one. Loggers that can take neither
(CSV) are skipped, and the callbacks also write a PNG next to the run's metrics so nothing is lost.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning import Trainer
from PIL import Image


def figure_to_image(fig) -> Image.Image:
    """Render a matplotlib figure to a PIL image and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def tensor_to_image(image: torch.Tensor) -> Image.Image:
    """(C, H, W) float in [0, 1] -> PIL RGB image."""
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().cpu()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def log_images(
    trainer: Trainer,
    key: str,
    images: Sequence[Image.Image | torch.Tensor],
    captions: Sequence[str] | None = None,
) -> Path | None:
    """Log ``images`` under ``key`` to every capable logger; save the first as PNG in the log dir.

    Returns the path of the PNG written (``<log_dir>/media/<key>_step<N>.png``), or None when the
    trainer has no logger. Safe to call from rank zero alone.
    """
    pil = [tensor_to_image(im) if isinstance(im, torch.Tensor) else im for im in images]
    step = trainer.global_step
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            kwargs = {"caption": list(captions)} if captions is not None else {}
            logger.log_image(key=key, images=pil, step=step, **kwargs)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):
            for i, im in enumerate(pil):
                array = np.asarray(im).transpose(2, 0, 1)
                logger.experiment.add_image(f"{key}/{i}", array, global_step=step)
    log_dir = local_log_dir(trainer)
    if log_dir is None or not pil:
        return None
    out = Path(log_dir) / "media" / f"{key.replace('/', '_')}_step{step}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    pil[0].save(out)
    return out


def local_log_dir(trainer: Trainer) -> Path | None:
    """The first logger's folder, read without a collective call.

    ``trainer.log_dir`` broadcasts from rank zero, so it hangs when only rank zero asks (as
    rank-zero-only callbacks do). With no logger there is no folder: nothing is written to the cwd.
    """
    if not trainer.loggers:
        return None
    logger = trainer.loggers[0]
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return Path(folder) if folder is not None else None
