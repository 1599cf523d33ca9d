"""The independent WSOL reference: [WSOL]'s evaluation loop written literally, and test maps.

[WSOL] (clovaai/wsolevaluation, ``evaluation.py`` / ``inference.py``) resizes each CAM with
``cv2.resize`` (bicubic), min-max normalizes it, and for every one of the 100 thresholds runs
``cv2.threshold``, ``cv2.findContours`` and boxes the largest contour (MaxBoxAcc) or every contour
(MaxBoxAccV2), scoring the best inclusive-pixel IoU with a GT box. This module does exactly that,
one image and one threshold at a time, sharing no code with ``callbacks/wsol/``: it is what the
tests compare the fast metrics with, and the loop ``benchmarks/bench_maxboxacc.py`` times them
against. It also makes the test maps (``make_cams``, ``map_family``).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi


def straightforward_box_hits(
    maps: np.ndarray,
    gt_boxes: list[np.ndarray],
    iou_thresholds: tuple[float, ...],
    multi_contour: bool,
    interval: float = 0.01,
) -> np.ndarray:
    """(D, T) hit counts of normalized (B, H, W) maps, one image and one threshold at a time."""
    return straightforward_hits(maps, gt_boxes, [(iou_thresholds, multi_contour)], interval)[0]


def straightforward_hits(
    maps: np.ndarray,
    gt_boxes: list[np.ndarray],
    rules: list[tuple[tuple[float, ...], bool]],
    interval: float = 0.01,
) -> list[np.ndarray]:
    """(D, T) hit counts for each rule (IoU levels, ``multi_contour``) from one contour pass.

    Every rule reads the same ``cv2.findContours`` of each (image, threshold): the fair
    straightforward counterpart of an implementation that scores several rules at once.
    """
    ious = straightforward_ious(maps, gt_boxes, [multi for _, multi in rules], interval)
    hits = []
    for (deltas, _), best in zip(rules, ious, strict=True):
        hits.append(np.stack([(best >= delta / 100).sum(0) for delta in deltas]).astype(np.int64))
    return hits


def straightforward_ious(
    maps: np.ndarray, gt_boxes: list[np.ndarray], multi_contour: list[bool], interval: float = 0.01
) -> list[np.ndarray]:
    """(B, T) best IoU with a GT box at every threshold, for each ``multi_contour`` value."""
    thresholds = np.arange(0, 1, interval)
    ious = [np.zeros((len(maps), len(thresholds))) for _ in multi_contour]
    for b, (scoremap, gt) in enumerate(zip(maps, gt_boxes, strict=True)):
        height, width = scoremap.shape
        if np.isnan(scoremap).any():
            raise ValueError("NaN score map")
        image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
        gt = np.asarray(gt).reshape(-1, 4)
        for k, tau in enumerate(thresholds):
            _, binary = cv2.threshold(image, int(tau * np.max(image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
            for multi, out in zip(multi_contour, ious, strict=True):
                if len(contours) == 0:
                    boxes = [[0, 0, 0, 0]]
                else:
                    chosen = contours if multi else [max(contours, key=cv2.contourArea)]
                    boxes = []
                    for contour in chosen:
                        x, y, w, h = cv2.boundingRect(contour)
                        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
                out[b, k] = max(_inclusive_iou(box, g) for box in boxes for g in gt)
    return ious


def _inclusive_iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes counting pixels inclusively."""
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    width = max(min(a[2], b[2]) - max(a[0], b[0]) + 1, 0)
    height = max(min(a[3], b[3]) - max(a[1], b[1]) + 1, 0)
    inter = width * height
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def straightforward_normalize(cam: np.ndarray, size: int = 224) -> np.ndarray:
    """cv2 bicubic resize then min-max, as [WSOL] ``inference.py`` (zeros for constant/NaN maps)."""
    resized = cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(resized).any() or resized.max() == resized.min():
        return np.zeros_like(resized, dtype=np.float64)
    return ((resized - resized.min()) / (resized.max() - resized.min())).astype(np.float64)


def make_cams(num: int, feature: int, seed: int, kind: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Feature-resolution CAMs and 224-px GT boxes: ``blob`` (object-like) or ``random`` (noise)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((num, feature, feature)).astype(np.float32)
    cams, boxes = noise, []
    if kind == "blob":  # one to three Gaussian parts plus a little noise, like trained CAMs
        yy, xx = np.mgrid[0:feature, 0:feature] / feature
        cams = 0.05 * noise
        for part in range(3):
            cx, cy = rng.uniform(0.2, 0.8, (2, num, 1, 1))
            sx, sy = rng.uniform(0.06, 0.25, (2, num, 1, 1))
            keep = (rng.random((num, 1, 1)) < 0.6) | (part == 0)
            weight = rng.uniform(0.3, 1.0, (num, 1, 1)) * keep
            cams = cams + weight * np.exp(
                -((xx - cx) ** 2) / (2 * sx**2) - (yy - cy) ** 2 / (2 * sy**2)
            )
    for _ in range(num):
        x0, y0 = rng.integers(0, 150, 2)
        boxes.append(np.array([[x0, y0, x0 + rng.integers(20, 74), y0 + rng.integers(20, 74)]]))
    return cams.astype(np.float32), boxes


FAMILIES = (
    "upsampled7",
    "upsampled14",
    "upsampled28",
    "blurred",
    "pixel_noise",
    "blobs",
    "noisy_blobs",
)


def map_family(
    family: str, num: int, seed: int, size: int = 224
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(num, size, size) score maps in [0, 1] of one kind, with one GT box per map.

    ``upsampled<g>``: uniform noise on a g x g grid, resized as [WSOL] (``straightforward_
    normalize``), like CAMs of a stride-32, 16 or 8 network; ``blurred``: pixel noise under a
    Gaussian blur of 4 px; ``pixel_noise``: independent uniform pixels; ``blobs``: ``make_cams``'
    object-like CAMs (one to three Gaussian parts) on a 14 px grid, resized the same way;
    ``noisy_blobs``: those plus uniform pixel noise of 2 % of their range (a few uint8 steps).
    """
    rng = np.random.default_rng(seed)
    if family.startswith("upsampled"):
        grid = int(family.removeprefix("upsampled"))
        cams = rng.random((num, grid, grid)).astype(np.float32)
        maps = np.stack([straightforward_normalize(c, size) for c in cams])
    elif family == "blurred":
        maps = np.stack([ndi.gaussian_filter(m, 4.0) for m in rng.random((num, size, size))])
        low, high = maps.min((1, 2), keepdims=True), maps.max((1, 2), keepdims=True)
        maps = (maps - low) / (high - low)
    elif family == "pixel_noise":
        maps = rng.random((num, size, size))
    elif family in ("blobs", "noisy_blobs"):
        cams, _ = make_cams(num, 14, seed, "blob")
        maps = np.stack([straightforward_normalize(c, size) for c in cams])
        if family == "noisy_blobs":
            maps = maps + 0.02 * rng.random(maps.shape)
            maps = maps / maps.max(axis=(1, 2), keepdims=True)
    else:
        raise ValueError(f"unknown map family {family!r}; known: {', '.join(FAMILIES)}")
    boxes = []
    for _ in range(num):
        x0, y0 = rng.integers(0, size * 2 // 3, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        boxes.append(np.array([[x0, y0, min(x0 + w, size - 1), min(y0 + h, size - 1)]]))
    return maps, boxes
