"""WSOL metrics against the [WSOL] golden cases and an independent straightforward loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wsol_reference import (
    make_cams,
    straightforward_box_hits,
    straightforward_hits,
    straightforward_normalize,
)

from benchmarks.bench_maxboxacc import run as run_benchmark
from callbacks.wsol.boxes import (
    box_iou,
    boxes_from_scoremap,
    max_box_ious,
    max_box_ious_per_rule,
)
from callbacks.wsol.functional import max_box_accuracy, normalize_cams, pixel_average_precision
from callbacks.wsol.metrics import (
    LocalizationAccuracy,
    MaxBoxAccuracy,
    MaxBoxAccuracyV2,
    PixelAveragePrecision,
    WSOLMetrics,
)
from lightning_modules.components.cams import minmax_normalize

UNIMODAL = [
    [0, 0, 0, 0, 0],
    [0, 0.4, 0.4, 0.4, 0.6],
    [0, 0.4, 1, 0.8, 0.6],
    [0, 0.4, 0.4, 0.4, 0.6],
]
MULTIMODAL = [
    [0.4, 0, 0.2, 0.2, 0.2],
    [0.4, 0.4, 0, 0.4, 0],
    [0, 0, 0, 0.4, 0],
    [1, 0.6, 0.8, 0.2, 0.2],
]


def test_iou_golden():
    assert box_iou(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0] == pytest.approx(
        8 / 27
    )
    assert box_iou(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 1.0


@pytest.mark.parametrize(
    ("scoremap", "expected"),
    [
        (UNIMODAL, [[1, 1, 4, 3], [1, 1, 4, 3], [2, 1, 4, 3], [2, 2, 4, 3], [2, 2, 3, 3]]),
        (MULTIMODAL, [[0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3], [0, 3, 1, 3]]),
        (np.zeros((3, 3)), [[0, 0, 0, 0]] * 5),
    ],
)
def test_boxes_golden(scoremap, expected):
    thresholds = np.arange(0, 1, 0.2)
    boxes = boxes_from_scoremap(np.asarray(scoremap, dtype=np.float64), thresholds)
    assert [b[0].tolist() for b in boxes] == expected
    # the batched path must give the IoU of exactly these boxes (GT = each expected box)
    maps = torch.tensor(scoremap, dtype=torch.float64)[None]
    for gt in expected:
        ious = max_box_ious(maps, [np.array([gt])], thresholds, multi_contour=False)[0]
        reference = [box_iou(np.array([e]), np.array([gt]))[0, 0] for e in expected]
        np.testing.assert_array_equal(ious, reference)


def test_nan_map_raises():
    with pytest.raises(ValueError):
        boxes_from_scoremap(np.full((3, 3), np.nan), np.arange(0, 1, 0.2))
    with pytest.raises(ValueError):
        max_box_accuracy(torch.full((1, 3, 3), float("nan")), [np.zeros((1, 4))])


def _gt_boxes(num: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x0, y0 = rng.integers(0, 120, (2, num))
    w, h = rng.integers(30, 100, (2, num))
    return [np.array([[a, b, a + c, b + d]]) for a, b, c, d in zip(x0, y0, w, h, strict=True)]


def test_handmade_maps():
    boxes = _gt_boxes(6, 0)
    perfect = torch.zeros(6, 224, 224)
    left = torch.zeros(6, 224, 224)
    for i, ((x0, y0, x1, y1),) in enumerate(boxes):
        perfect[i, y0:y1, x0:x1] = 1
        left[i, y0 : y1 + 1, x0 : x0 + int(0.6 * (x1 - x0 + 1))] = 1
    for metric in (MaxBoxAccuracy(), MaxBoxAccuracyV2()):
        metric.update(perfect, [torch.from_numpy(b) for b in boxes])
        assert metric.compute().item() == 100.0
    constant = MaxBoxAccuracyV2()
    constant.update(torch.full((6, 14, 14), 0.3), [torch.from_numpy(b) for b in boxes])
    assert constant.compute().item() == 0.0
    partial = MaxBoxAccuracyV2()
    partial.update(left, [torch.from_numpy(b) for b in boxes])
    assert partial.per_iou().tolist() == [100.0, 100.0, 0.0]
    assert partial.compute().item() == pytest.approx(66.7, abs=0.1)


def _structured_maps(num: int, seed: int) -> np.ndarray:
    """Rings, several blobs, border-touching bars and plateaus: hard cases for the topology."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224]
    maps = []
    for _ in range(num):
        cx, cy, r = rng.uniform(30, 194), rng.uniform(30, 194), rng.uniform(15, 60)
        ring = np.exp(-((np.hypot(xx - cx, yy - cy) - r) ** 2) / 60)
        blobs = sum(
            rng.uniform(0.3, 1)
            * np.exp(-((xx - rng.uniform(0, 224)) ** 2 + (yy - rng.uniform(0, 224)) ** 2) / 300)
            for _ in range(3)
        )
        bar = (xx < rng.integers(5, 40)) * 0.5
        speckle = (rng.random((224, 224)) < 0.002) * 0.3  # isolated one-pixel components
        m = ring + blobs + bar + speckle
        m = np.round(m * 8) / 8 if rng.random() < 0.5 else m  # plateaus
        maps.append((m - m.min()) / (m.max() - m.min()))
    return np.stack(maps)


@pytest.mark.parametrize("kind", ["random", "blob", "structured"])
def test_equal_to_straightforward(kind):
    if kind == "structured":
        maps = torch.from_numpy(_structured_maps(12, 1))
        boxes = _gt_boxes(12, 2)
    else:
        cams, boxes = make_cams(16, 14, seed=3, kind=kind)
        maps = normalize_cams(torch.from_numpy(cams))
    for multi, deltas in ((False, (50,)), (True, (30, 50, 70))):
        metric = MaxBoxAccuracy(deltas, multi_contour=multi, image_size=None)
        metric.update(maps[:10], [torch.from_numpy(b) for b in boxes[:10]])
        metric.update(maps[10:], [torch.from_numpy(b) for b in boxes[10:]])
        reference = straightforward_box_hits(maps.numpy(), boxes, deltas, multi)
        np.testing.assert_array_equal(metric.hits.numpy(), reference)


def test_one_pass_serves_both_rules():
    """V1 and V2 from one analysis, split over threads, equal the separate single-thread runs."""
    maps = torch.from_numpy(_structured_maps(6, 5))
    thresholds, boxes = np.arange(0, 1, 0.01), _gt_boxes(6, 6)
    both = max_box_ious_per_rule(maps, boxes, thresholds, (False, True), True, workers=3)
    for multi, ious in zip((False, True), both, strict=True):
        alone = max_box_ious(maps, boxes, thresholds, multi, workers=1)
        np.testing.assert_array_equal(ious, alone)
    assert (both[1] >= both[0]).all()  # all contours include the largest
    assert (both[1] > both[0]).any()  # and the structured maps have more than one


def test_device_resize_matches_cv2():
    cams, _ = make_cams(8, 14, seed=4, kind="blob")
    ours = normalize_cams(torch.from_numpy(cams)).numpy()
    reference = np.stack([straightforward_normalize(c) for c in cams])
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_separable_resize_is_torch_interpolate(mode):
    cams = torch.rand(3, 7, 11, dtype=torch.float64)
    cams[2, 3, 4] = float("nan")  # NaN: all zeros
    ours = normalize_cams(cams, (40, 30), mode)
    resized = torch.nn.functional.interpolate(cams[:, None], (40, 30), mode=mode)[:, 0]
    low = resized.flatten(1).amin(1)[:, None, None]
    high = resized.flatten(1).amax(1)[:, None, None]
    torch.testing.assert_close(ours[:2], ((resized - low) / (high - low))[:2], rtol=0, atol=1e-12)
    assert (ours[:2].flatten(1).amin(1) == 0).all() and (ours[:2].flatten(1).amax(1) == 1).all()
    assert not ours[2].any()
    # a map that is constant at the scoring size becomes zeros (resizing leaves ~1e-15 ripples)
    assert not normalize_cams(torch.full((1, 5, 5), 0.3), size=None).any()


def test_one_min_max_normalization():
    """``normalize_cams`` scales as ``minmax_normalize``, the one MinMaxCAM's mask H_m uses."""
    cams = torch.rand(4, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cams[3] = 0.25  # constant: zeros in the metrics, 0 / (0 + eps) = 0 in H_m
    torch.testing.assert_close(
        normalize_cams(cams, size=None)[:3], minmax_normalize(cams[:3]), rtol=0, atol=0
    )
    assert not normalize_cams(cams, size=None)[3].any()
    masks = minmax_normalize(cams, eps=1e-8)
    assert not masks[3].any() and (masks[:3].amax((1, 2)) < 1).all()
    leaf = cams.clone().requires_grad_(True)
    minmax_normalize(leaf, eps=1e-8)[:3].sum().backward()
    assert leaf.grad[:3].abs().sum() > 0  # differentiable through the min and max too


def test_metric_set_needs_the_same_inputs_every_batch():
    cams, boxes = make_cams(4, 14, seed=1, kind="blob")
    cams, boxes = torch.from_numpy(cams), torch.from_numpy(np.concatenate(boxes))
    masks = torch.zeros(4, 224, 224, dtype=torch.long)
    masks[:, 50:100, 50:100] = 1
    metrics = WSOLMetrics(workers=1)
    with pytest.raises(ValueError, match="`boxes` or `masks`"):
        metrics.update(cams)
    metrics.update(cams[:2], boxes[:2], masks[:2])
    with pytest.raises(ValueError, match="same of boxes / masks"):
        metrics.update(cams[2:], boxes[2:])
    assert set(metrics.compute()) == {
        "maxboxacc",
        "maxboxacc_threshold",
        "maxboxacc_v2",
        "maxboxacc_v2@30",
        "maxboxacc_v2@50",
        "maxboxacc_v2@70",
        "pxap",
    }


def test_states_add_up():
    cams, boxes = make_cams(12, 14, seed=5, kind="blob")
    boxes = [torch.from_numpy(b) for b in boxes]
    whole, first, second = MaxBoxAccuracyV2(), MaxBoxAccuracyV2(), MaxBoxAccuracyV2()
    whole.update(torch.from_numpy(cams), boxes)
    first.update(torch.from_numpy(cams[:5]), boxes[:5])
    second.update(torch.from_numpy(cams[5:]), boxes[5:])
    first.merge_state(second)
    assert torch.equal(first.hits, whole.hits) and first.compute() == whole.compute()
    whole.reset()
    assert whole.hits.sum() == 0 and whole.total == 0


def test_every_box_form_gives_the_same_hits():
    cams, _ = make_cams(6, 14, seed=2, kind="blob")
    maps = normalize_cams(torch.from_numpy(cams))
    boxes = [boxes_from_scoremap(m, np.array([0.5]))[0][:1] for m in maps]  # hit at tau 0.5
    stacked = torch.from_numpy(np.concatenate(boxes))  # (B, 4)
    forms = [
        stacked,
        stacked[:, None].repeat(1, 2, 1),  # (B, G, 4), padded with the same box
        [torch.from_numpy(b) for b in boxes],
        boxes,
        [b.tolist() for b in boxes],
        [b.astype(np.float32) for b in boxes],
    ]
    hits = []
    for form in forms:
        metric = MaxBoxAccuracyV2()
        metric.update(torch.from_numpy(cams), form)
        hits.append(metric.hits)
    assert hits[0].sum() > 0 and all(torch.equal(h, hits[0]) for h in hits)
    with pytest.raises(ValueError, match="5 box sets for 6 CAMs"):
        MaxBoxAccuracyV2().update(torch.from_numpy(cams), stacked[:5])


def _numpy_pxap(maps: np.ndarray, masks: np.ndarray) -> float:
    """PxAP from np.histogram, following the [WSOL] MaskEvaluator definition."""
    edges = np.append(np.arange(0, 1, 0.01), [1.0, 2.0, 3.0])
    pos = np.histogram(maps[masks == 1], bins=edges)[0].astype(float)
    neg = np.histogram(maps[masks == 0], bins=edges)[0].astype(float)
    tp, fp = pos[::-1].cumsum(), neg[::-1].cumsum()
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = tp / (tp + fp), tp / pos.sum()
    return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100)


def test_pxap():
    masks = torch.zeros(4, 224, 224, dtype=torch.long)
    masks[:, 50:120, 60:150] = 1
    masks[:, :10] = 255  # ignored
    perfect = PixelAveragePrecision()
    perfect.update(masks.eq(1).double() + 0.0, masks)
    assert perfect.compute().item() == pytest.approx(100.0)
    cams, _ = make_cams(4, 14, seed=6, kind="blob")
    metric = PixelAveragePrecision()
    metric.update(torch.from_numpy(cams[:2]), masks[:2])
    metric.update(torch.from_numpy(cams[2:]), masks[2:])
    maps = normalize_cams(torch.from_numpy(cams)).numpy()
    assert metric.compute().item() == pytest.approx(_numpy_pxap(maps, masks.numpy()), abs=1e-9)
    assert pixel_average_precision(torch.from_numpy(maps), masks).item() == pytest.approx(
        metric.compute().item(), abs=1e-9
    )


def test_localization_accuracy():
    boxes = _gt_boxes(4, 7)
    cams = torch.zeros(4, 224, 224)
    for i, ((x0, y0, x1, y1),) in enumerate(boxes):
        cams[i, y0:y1, x0:x1] = 1
    cams[3] = 0.5  # constant map: never localized
    logits = torch.tensor(
        [[5.0, 1, 0, 0, 0, 0], [1, 5, 0, 0, 0, 0], [0, 5, 1, 2, 3, 4], [5, 0, 0, 0, 0, 0]]
    )
    target = torch.tensor([0, 0, 0, 0])  # image 1: rank 2; image 2: rank 6 (outside the top 5)
    metric = LocalizationAccuracy(top_k=(1, 5))
    metric.update(cams, [torch.from_numpy(b) for b in boxes], logits, target)
    out = metric.compute()
    assert out["gt_known"].item() == 75.0
    assert out["top1"].item() == 25.0
    assert out["top5"].item() == 50.0


def test_official_variant_is_strict_and_exclusive():
    # a box that overlaps the GT by exactly half (exclusive areas) passes >= but not >
    a, b = np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 20]])
    assert box_iou(a, b, inclusive=False)[0, 0] == 0.5
    # a CAM whose box is ``a`` at every threshold: a hit for [WSOL] (inclusive IoU 121 / 231),
    # a miss for the author's rule (exclusive IoU exactly 0.5, strict >)
    cam = torch.zeros(1, 32, 32)
    cam[0, :10, :10] = 1  # contour box (x, y, x + w, y + h) = (0, 0, 10, 10)
    for variant, expected in (("wsol", 100.0), ("minmaxcam_official", 0.0)):
        metric = MaxBoxAccuracy(image_size=None, variant=variant)
        metric.update(cam, torch.from_numpy(b))
        assert metric.compute().item() == expected, variant


def test_callback_logs_all_metrics():
    from callbacks.cam_overlay import overlay_panel
    from callbacks.wsol.callback import LogWSOLMetrics

    class Module:
        device = torch.device("cpu")
        logged: dict = {}

        def log(self, key, value, **kwargs):
            self.logged[key] = value

    boxes = torch.tensor([[[10, 12, 40, 50]], [[0, 0, 63, 63]]])
    cams = torch.zeros(2, 64, 64)
    cams[0, 12:50, 10:40] = 1
    cams[1] = torch.rand(64, 64)
    masks = torch.zeros(2, 64, 64, dtype=torch.long)
    masks[0, 12:51, 10:41] = 1
    masks[1, 5:20, 5:20] = 1
    outputs = {
        "cams": cams,
        "boxes": boxes,
        "masks": masks,
        "logits": torch.eye(2),
        "label": torch.arange(2),
    }
    callback, module = LogWSOLMetrics(image_size=64), Module()
    metrics = callback.make_metrics("val")
    callback.update(metrics, outputs, None, module)
    callback.report("val", metrics, None, module)
    expected = {
        "val/maxboxacc",
        "val/maxboxacc_v2",
        "val/maxboxacc_v2@30",
        "val/pxap",
        "val/top1_loc",
    }
    assert expected <= set(module.logged)
    assert module.logged["val/maxboxacc"] == 100.0  # image 1: the full box is the GT at tau = 0
    assert module.logged["val/maxboxacc_threshold"] == 0.0  # both hit at the first threshold
    assert callback.last == {k: v for k, v in module.logged.items() if k.startswith("val/")}
    panel = overlay_panel(torch.zeros(3, 64, 64), cams[0], boxes[0, 0], (5, 5, 30, 30))
    assert panel.shape == (3, 64, 64)
    assert panel[:, 12, 35].tolist() == [0.0, 1.0, 0.0]  # green GT edge
    assert panel[:, 5, 20].tolist() == [1.0, 0.0, 0.0]  # red estimated edge


@pytest.mark.parametrize("variant", ["wsol", "minmaxcam_official"])
def test_callback_shared_pass_equals_separate_metrics(variant):
    from callbacks.wsol.callback import LogWSOLMetrics

    cams, boxes = make_cams(12, 14, seed=7, kind="blob")
    cams = torch.from_numpy(cams)
    for i, scoremap in enumerate(normalize_cams(cams)[::2]):  # half the GT boxes are CAM boxes
        boxes[2 * i] = boxes_from_scoremap(scoremap, np.array([0.3]))[0]
    boxes = [torch.from_numpy(b) for b in boxes]
    logits, target = torch.randn(12, 5, generator=torch.Generator().manual_seed(0)), torch.ones(12)
    target = target.long()
    shared = LogWSOLMetrics(variant=variant, workers=2).make_metrics("val")
    shared.update_boxes(cams, boxes, logits, target)
    separate = {
        "maxboxacc": MaxBoxAccuracy(variant=variant),
        "maxboxacc_v2": MaxBoxAccuracyV2(variant=variant),
    }
    for name, metric in separate.items():
        metric.update(cams, boxes)
        assert torch.equal(getattr(shared, name).hits, metric.hits), name
    loc = LocalizationAccuracy()
    loc.update(cams, boxes, logits, target)
    assert torch.equal(shared.loc.hits, loc.hits)
    assert shared.loc.hits[0].amax() >= 6  # the CAM-box half is found


@pytest.mark.parametrize("kind", ["blob", "random"])
def test_box_method_switch_changes_the_path_not_the_numbers(kind):
    from callbacks.wsol.callback import LogWSOLMetrics

    cams, boxes = make_cams(10, 14, seed=3, kind=kind)
    cams, boxes = torch.from_numpy(cams), [torch.from_numpy(b) for b in boxes]
    logits, labels = torch.randn(10, 4, generator=torch.Generator().manual_seed(1)), torch.zeros(10)
    hits = {}
    for method in ("level_sets", "cv2", "auto"):
        shared = LogWSOLMetrics(box_method=method, workers=1).make_metrics("val")
        assert shared.maxboxacc.box_method == shared.loc.box_method == method
        shared.update_boxes(cams, boxes, logits, labels.long())
        hits[method] = [shared.maxboxacc.hits, shared.maxboxacc_v2.hits, shared.loc.hits]
    for method in ("cv2", "auto"):
        for ours, theirs in zip(hits[method], hits["level_sets"], strict=True):
            assert torch.equal(ours, theirs), method
    with pytest.raises(ValueError, match="unknown `box_method` 'fast'"):
        LogWSOLMetrics(box_method="fast")


def test_benchmark_runs_and_agrees():
    """The benchmark's interleaved timing loop on a few maps: every path equals the loop."""
    results = run_benchmark(12, "blob", batch_size=5, workers=2, chunk=7)
    assert results["v1_equal"] == results["v2_equal"] == results["v1v2_equal"] == 1.0


def test_shared_straightforward_loop_equals_one_loop_per_rule():
    cams, _ = make_cams(8, 14, seed=4, kind="blob")
    maps = np.stack([straightforward_normalize(c) for c in cams])
    boxes = [boxes_from_scoremap(m, np.array([0.4]))[0] for m in maps]  # hits near tau 0.4
    rules = [((50,), False), ((30, 50, 70), True)]
    shared = straightforward_hits(maps, boxes, rules)
    for (deltas, multi), hits in zip(rules, shared, strict=True):
        assert np.array_equal(hits, straightforward_box_hits(maps, boxes, deltas, multi))
    assert shared[0].sum() > 0 and shared[1].sum() > 0
