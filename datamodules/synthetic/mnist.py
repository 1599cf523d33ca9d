"""A small MNIST twin in the real IDX format, built from scikit-learn's bundled handwritten digits.

``sklearn.datasets.load_digits()`` ships 1,797 real 8x8 handwritten digits (values 0..16), so
nothing is downloaded. Each is scaled to 0..255, resized bilinearly to 20x20 and pasted centred in
a 28x28 zero canvas (MNIST's 20x20 box). Every class is split in order: its first 80 % go to
``train-*``, the rest to ``t10k-*``. The files are written with :func:`write_idx`, so the real
reader and bag generators run unchanged; the real MNIST drops in by changing ``root``.
The known structure a method must recover is the digit class, stored in the label files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.formats.mnist import SPLITS, write_idx


def _to_mnist_canvas(digits: np.ndarray) -> np.ndarray:
    """(N, 8, 8) values 0..16 -> (N, 28, 28) uint8, the digit in the central 20x20 box."""
    small = torch.from_numpy(digits.astype(np.float32) * (255.0 / 16.0))[:, None]
    box = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
    canvas = torch.zeros(len(digits), 28, 28)
    canvas[:, 4:24, 4:24] = box[:, 0]
    return canvas.round().clamp(0, 255).to(torch.uint8).numpy()


def synthetic_mnist_arrays(train_fraction: float = 0.8) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (images uint8 (N, 28, 28), labels uint8 (N,)); pure function of sklearn's digits."""
    from sklearn.datasets import load_digits

    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    digits = load_digits()
    images, labels = _to_mnist_canvas(digits.images), digits.target.astype(np.uint8)
    train_idx, test_idx = [], []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)  # in dataset order
        cut = int(round(train_fraction * len(members)))
        train_idx.append(members[:cut])
        test_idx.append(members[cut:])
    out = {}
    for split, parts in (("train", train_idx), ("test", test_idx)):
        order = np.sort(np.concatenate(parts))
        out[split] = (images[order], labels[order])
    return out


def write_synthetic_mnist(root: str | Path, gzip: bool = True) -> Path:
    """Write the twin's four IDX files into ``root`` (``.gz`` when ``gzip``); return ``root``."""
    root = Path(root)
    suffix = ".gz" if gzip else ""
    for split, (images, labels) in synthetic_mnist_arrays().items():
        image_name, label_name, _ = SPLITS[split]
        write_idx(root / f"{image_name}{suffix}", images)
        write_idx(root / f"{label_name}{suffix}", labels)
    return root
