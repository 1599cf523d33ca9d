"""The level-set box analysis against cv2: the contour facts it rests on, then its results."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from wsol_reference import FAMILIES, make_cams, map_family, straightforward_ious

from callbacks.wsol import boxes as cam_boxes
from callbacks.wsol.boxes import (
    _integer_levels,
    _pad_boxes,
    box_iou,
    contour_boxes,
    max_box_ious,
    max_box_ious_per_rule,
)
from callbacks.wsol.boxes import scoremaps_to_uint8 as to_uint8
from callbacks.wsol.functional import normalize_cams, resize_bands, resize_taps
from callbacks.wsol.level_sets import ALL, LARGEST, OK, TO_CV2, analyse
from callbacks.wsol.level_sets.choice import cut_boundary

EIGHT = np.ones((3, 3), dtype=bool)


def _masks(num: int, seed: int):
    """Random binary masks, half pixel noise and half thresholded smooth noise, 3 to 30 px."""
    rng = np.random.default_rng(seed)
    for i in range(num):
        height, width = rng.integers(3, 31, 2)
        field = rng.random((height, width))
        if i % 2:
            field = ndi.gaussian_filter(field, rng.uniform(0.5, 2.0))
        yield field > np.quantile(field, rng.uniform(0.2, 0.8))


def _expected_contours(mask: np.ndarray):
    """(boxes, outer areas) of the contours cv2 should find, from scipy labellings alone.

    Outer contours: 8-connected components, box = pixel box, area = n4 + n3 / 2 over the quads
    of the component with its holes filled. Holes: 4-connected background components that do
    not reach the border, box = pixel box grown by one.
    """
    labels, count = ndi.label(mask, EIGHT)
    boxes, areas = [], []
    for i in range(1, count + 1):
        ys, xs = np.nonzero(labels == i)
        boxes.append((xs.min(), ys.min(), xs.max(), ys.max()))
        outside, _ = ndi.label(np.pad(labels != i, 1, constant_values=True))
        filled = (outside != outside[0, 0])[1:-1, 1:-1]
        quads = filled[:-1, :-1].astype(int) + filled[:-1, 1:] + filled[1:, :-1] + filled[1:, 1:]
        areas.append((quads == 4).sum() + 0.5 * (quads == 3).sum())
    background, count = ndi.label(np.pad(~mask, 1, constant_values=True))
    for i in set(range(1, count + 1)) - {background[0, 0]}:
        ys, xs = np.nonzero(background == i)
        boxes.append((xs.min() - 2, ys.min() - 2, xs.max(), ys.max()))  # -1 pad, then grown
    return sorted(boxes), sorted(areas)


def test_contour_facts_match_cv2():
    """What the analysis assumes of cv2.findContours(RETR_TREE), on 600 random masks."""
    for mask in _masks(600, seed=0):
        contours, hierarchy = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE
        )[-2:]
        parents = hierarchy[0][:, 3] if hierarchy is not None else np.zeros(0, dtype=int)
        depth = [0] * len(contours)
        for j, parent in enumerate(parents):
            while parent >= 0:
                depth[j] += 1
                parent = parents[parent]
        rects = [cv2.boundingRect(c) for c in contours]
        found = sorted((x, y, x + w - 1, y + h - 1) for x, y, w, h in rects)
        outer = sorted(
            cv2.contourArea(c) for c, d in zip(contours, depth, strict=True) if d % 2 == 0
        )
        assert (found, outer) == _expected_contours(mask)
        for contour, (_, _, w, h) in zip(contours, rects, strict=True):
            # the area never exceeds the box of pixel centres: the bound MaxBoxAcc decides by
            assert cv2.contourArea(contour) <= (w - 1) * (h - 1)
        for j, parent in enumerate(parents):
            if parent >= 0:
                assert parent < j  # a parent is listed before its children
                if depth[j] % 2:  # and a hole is never larger than its parent
                    assert cv2.contourArea(contours[j]) <= cv2.contourArea(contours[parent])


def _reference(s8: np.ndarray, levels: np.ndarray, boxes, inclusive: bool = True) -> np.ndarray:
    """(B, 2, T) best IoUs of the largest contour's box and of any contour's box, cv2 per level."""
    out = np.zeros((len(s8), 2, levels.shape[1]))
    for b, (scoremap, gt) in enumerate(zip(s8, boxes, strict=True)):
        for k, level in enumerate(levels[b]):
            mask = ((scoremap > level) * 255).astype(np.uint8)
            for multi_contour in (False, True):
                boxes_k = contour_boxes(mask, multi_contour)
                out[b, int(multi_contour), k] = box_iou(boxes_k, gt, inclusive).max()
    return out


def _structured(num: int, seed: int, size: int = 96) -> np.ndarray:
    """Rings, blobs, a border bar, one-pixel speckles and (half of them) quantized plateaus."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    maps = []
    for _ in range(num):
        cx, cy, r = rng.uniform(15, size - 15, 3)
        m = np.exp(-((np.hypot(xx - cx, yy - cy) - r / 3) ** 2) / 20)
        for _ in range(3):
            cx, cy = rng.uniform(0, size, 2)
            m = m + rng.uniform(0.3, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 80)
        m += (xx < rng.integers(2, 15)) * 0.5 + (rng.random((size, size)) < 0.003) * 0.3
        if rng.random() < 0.5:
            m = np.round(m * 8) / 8
        maps.append((m - m.min()) / (m.max() - m.min()))
    return np.stack(maps)


def _binary(num: int, seed: int, size: int = 48) -> np.ndarray:
    """Unions of rectangles and rectangular rings at a few levels: ties everywhere."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((num, size, size))
    for m in maps:
        for _ in range(rng.integers(1, 5)):
            x0, y0 = rng.integers(0, size - 4, 2)
            x1, y1 = x0 + rng.integers(2, size - x0), y0 + rng.integers(2, size - y0)
            m[y0:y1, x0:x1] = rng.choice([0.5, 1.0])
            if rng.random() < 0.5 and x1 - x0 > 4 and y1 - y0 > 4:
                m[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = 0
        m[0, 0] = 0
    return maps


def _gt(num: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """One or two random GT boxes per image inside (height, width)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        x0 = rng.integers(0, width, rng.integers(1, 3))
        y0 = rng.integers(0, height, len(x0))
        x1 = np.minimum(x0 + rng.integers(0, width, len(x0)), width - 1)
        y1 = np.minimum(y0 + rng.integers(0, height, len(x0)), height - 1)
        out.append(np.stack([x0, y0, x1, y1], 1))
    return out


def _maps(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind in ("blob", "random"):
        cams, _ = make_cams(12, 14, seed=5, kind=kind)
        return normalize_cams(torch.from_numpy(cams), (112, 112)).numpy()
    if kind == "structured":
        return _structured(10, 3)
    if kind == "binary":
        return _binary(12, 4)
    if kind == "pixel_noise":
        return rng.random((6, 40, 40))
    if kind == "thin":  # rows, columns and tiny maps
        return [rng.random((1, 9)), rng.random((9, 1)), rng.random((2, 2)), rng.random((3, 5))]
    raise ValueError(kind)


KINDS = ["blob", "random", "structured", "binary", "pixel_noise", "thin"]
# (inclusive, multi_contour): MaxBoxAcc alone floods holes only where boxes don't decide
CASES = ((True, (False, True)), (False, (False, True)), (True, (False,)))


@pytest.mark.parametrize("kind", KINDS)
def test_analysis_equals_cv2_per_level(kind):
    """Every level's best IoU, any contour and (where decided) the largest, equals cv2's."""
    for maps in [_maps(kind)] if kind != "thin" else [m[None] for m in _maps(kind)]:
        maps = torch.as_tensor(maps / maps.max(axis=(1, 2), keepdims=True))
        s8 = to_uint8(maps).numpy()
        thresholds = np.arange(0, 1, 0.01)
        boxes = _gt(len(maps), *maps.shape[1:], seed=1)
        gt, num_gt = _pad_boxes(boxes)
        for inclusive, multi_contour in CASES:
            out = analyse(maps.numpy(), thresholds, gt, num_gt, inclusive, multi_contour)
            found_s8, levels, ious, undecided = out.s8, out.levels, out.ious, out.undecided
            status = out.status
            np.testing.assert_array_equal(found_s8, s8)
            np.testing.assert_array_equal(levels, _integer_levels(torch.from_numpy(s8), thresholds))
            assert (status == OK).all()
            expected = _reference(s8, levels, boxes, inclusive)
            if True in multi_contour:
                np.testing.assert_array_equal(ious[:, ALL], expected[:, ALL])
            decided = ~undecided
            np.testing.assert_array_equal(ious[:, LARGEST][decided], expected[:, LARGEST][decided])
        if kind == "blob":
            assert undecided.mean() < 0.01  # cv2 is rarely needed on object-like CAMs


@pytest.mark.parametrize("kind", ["structured", "binary"])
def test_every_method_and_both_fallbacks(kind, monkeypatch):
    """Each method, with the maps above a cap of local maxima left to cv2 and the others
    analysed (their undecided levels through cv2): all equal cv2's."""
    maps = torch.as_tensor(_maps(kind))
    boxes = _gt(len(maps), *maps.shape[1:], seed=2)
    thresholds = np.arange(0, 1, 0.01)
    s8 = to_uint8(maps)
    expected = _reference(s8.numpy(), _integer_levels(s8, thresholds).numpy(), boxes)
    regions = analyse(maps.numpy(), thresholds, *_pad_boxes(boxes)).regions
    cap, real, statuses = int(np.median(regions)), cam_boxes.analyse, {}

    def capped(*args):
        out = real(*args, max_regions=cap)
        statuses[args[-1]] = out.status  # by method
        return out

    monkeypatch.setattr(cam_boxes, "analyse", capped)
    for method in ("level_sets", "cv2", "auto"):
        for multi_contour in (False, True):
            ious = max_box_ious(maps, boxes, thresholds, multi_contour, workers=2, method=method)
            np.testing.assert_array_equal(ious, expected[:, int(multi_contour)])
    assert (statuses["cv2"] == TO_CV2).all()
    for method in ("level_sets", "auto"):  # few regions: auto analyses all it may
        np.testing.assert_array_equal(statuses[method] == TO_CV2, regions > cap)
    assert 0 < (regions > cap).sum() < len(maps)


def test_auto_chooses_cv2_where_the_analysis_does_not_pay(monkeypatch):
    """Smooth maps are analysed, the same with a little noise (many row segments of the float
    map, short uint8 cut boundaries) go to cv2, pixel noise (many of both) is analysed; the
    IoUs stay [WSOL]'s."""
    smooth, boxes = map_family("blobs", 2, seed=4)
    noisy, _ = map_family("noisy_blobs", 2, seed=4)
    maps = np.concatenate([smooth, noisy])
    real, statuses = cam_boxes.analyse, []

    def recording(*args):
        out = real(*args)
        statuses.append(out.status)
        return out

    monkeypatch.setattr(cam_boxes, "analyse", recording)
    thresholds = np.arange(0, 1, 0.01)
    found = max_box_ious_per_rule(torch.from_numpy(maps), boxes * 2, thresholds, method="auto")
    np.testing.assert_array_equal(
        np.stack(found), straightforward_ious(maps, boxes * 2, [False, True])
    )
    assert statuses[0].tolist() == [OK, OK, TO_CV2, TO_CV2]
    pixel_noise, gt = map_family("pixel_noise", 1, seed=4)
    analysed = analyse(pixel_noise, thresholds, *_pad_boxes(gt), method="auto")
    assert analysed.status[0] == OK


def test_cut_boundary_is_the_mean_boundary_of_the_cuts():
    """Summed over all 256 cuts ``s8 > L``, the separated 4-neighbour pairs, over max(s8)."""
    s8 = to_uint8(torch.from_numpy(_structured(1, 8, size=30)))[0].numpy()
    separated = 0
    for level in range(256):
        cut = s8 > level
        separated += (cut[:, 1:] != cut[:, :-1]).sum() + (cut[1:] != cut[:-1]).sum()
    assert cut_boundary(s8) == pytest.approx(separated / s8.max(), rel=1e-12)
    assert cut_boundary(np.zeros((4, 4), dtype=np.uint8)) == 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_methods_equal_the_reference_loop_on_map_families(family):
    """``level_sets``, ``cv2`` and ``auto`` equal [WSOL]'s loop, written literally, per level."""
    maps, boxes = map_family(family, 2, seed=3, size=64)
    reference = straightforward_ious(maps, boxes, [False, True])
    thresholds = np.arange(0, 1, 0.01)
    for method in ("level_sets", "cv2", "auto"):
        found = max_box_ious_per_rule(
            torch.from_numpy(maps), boxes, thresholds, (False, True), workers=2, method=method
        )
        np.testing.assert_array_equal(np.stack(found), np.stack(reference))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        max_box_ious(
            torch.zeros((1, 4, 4)),
            [np.array([[0, 0, 3, 3]])],
            np.arange(0, 1, 0.1),
            True,
            method="fast",
        )


def test_equal_areas_are_decided_by_cv2():
    """Two equal blobs: MaxBoxAcc's largest contour is cv2's first of the two, via cv2."""
    yy, xx = np.mgrid[0:64, 0:64]
    blob = lambda cx: np.exp(-((xx - cx) ** 2 + (yy - 32) ** 2) / 50)  # noqa: E731
    maps = torch.as_tensor((blob(16) + blob(48))[None] / (blob(16) + blob(48)).max())
    s8 = to_uint8(maps)
    levels = _integer_levels(s8, np.arange(0, 1, 0.01)).numpy()
    boxes = [np.array([[40, 24, 56, 40]])]  # around the right blob only
    undecided = analyse(maps.numpy(), np.arange(0, 1, 0.01), *_pad_boxes(boxes)).undecided
    assert undecided.sum() > 10
    ious = max_box_ious(maps, boxes, np.arange(0, 1, 0.01), False)
    np.testing.assert_array_equal(ious, _reference(s8.numpy(), levels, boxes)[:, 0])


def test_threads_agree():
    maps = torch.as_tensor(_structured(7, 9))
    boxes = _gt(7, 96, 96, seed=3)
    one = max_box_ious(maps, boxes, np.arange(0, 1, 0.01), True, workers=1)
    np.testing.assert_array_equal(
        max_box_ious(maps, boxes, np.arange(0, 1, 0.01), True, workers=3), one
    )
    with pytest.raises(ValueError, match="workers"):
        max_box_ious(maps, boxes, np.arange(0, 1, 0.01), True, workers=0)


@pytest.mark.parametrize(
    ("shape", "size"), [((14, 14), (224, 224)), ((7, 11), (40, 30)), ((9, 9), (9, 9))]
)
def test_cams_resized_in_the_analysis_match_normalize_cams(shape, size):
    """CPU CAMs are resized and normalized inside the analysis: the same maps, the same IoUs."""
    rng = np.random.default_rng(11)
    cams = torch.from_numpy(rng.normal(size=(6, *shape)))
    cams[4] = 0.7  # constant: all zeros, as normalize_cams
    cams[5, 1, 2] = float("nan")  # NaN: all zeros too
    taps = resize_taps(shape[0], size[0]) + resize_bands(shape[1], size[1])
    maps = normalize_cams(cams, size)
    boxes = _gt(6, *size, seed=4)
    thresholds = np.arange(0, 1, 0.01)
    gt, num_gt = _pad_boxes(boxes)
    s8 = analyse(cams.numpy(), thresholds, gt, num_gt, taps=taps).s8
    np.testing.assert_array_equal(s8, to_uint8(maps).numpy())
    assert not s8[4:].any()
    for multi_contour in ((False,), (True,), (False, True)):
        raw = max_box_ious_per_rule(cams, boxes, thresholds, multi_contour, taps=taps)
        reference = max_box_ious_per_rule(maps, boxes, thresholds, multi_contour)
        np.testing.assert_array_equal(np.stack(raw), np.stack(reference))


def test_bad_maps_are_refused():
    boxes = [np.array([[0, 0, 3, 3]])]
    with pytest.raises(ValueError, match="NaN"):
        max_box_ious(torch.full((1, 4, 4), float("nan")), boxes, np.arange(0, 1, 0.1), True)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        max_box_ious(torch.full((1, 4, 4), 1.5), boxes, np.arange(0, 1, 0.1), True)
    with pytest.raises(ValueError, match="box sets"):
        max_box_ious(torch.zeros((2, 4, 4)), boxes, np.arange(0, 1, 0.1), True)
    with pytest.raises(ValueError, match="method"):
        max_box_ious(torch.zeros((1, 4, 4)), boxes, np.arange(0, 1, 0.1), True, method="fast")


# Run in a fresh interpreter with numba's bounds checking on (it must be set before numba
# compiles). Its cache lives apart from the normal one (whose code has no checks), in a folder
# named by a hash of the analysis' sources: numba keys its cache on each function's own file,
# so a cache kept across edits could run a caller with an old, unchecked callee.
_BOUNDS_CHECKED = """
import sys
import numba
import numpy as np
from callbacks.wsol.boxes import max_box_ious_per_rule
from callbacks.wsol.level_sets import analyse
from callbacks.wsol.level_sets.choice import cut_boundary


@numba.njit
def _past_the_end(a):
    return a[a.size]


try:
    _past_the_end(np.zeros(1))
except IndexError:
    pass
else:
    sys.exit("bounds checking is off")
data = np.load(sys.argv[1])
out = {}
for i in range(int(data["count"])):
    maps, gt, num_gt = data[f"maps{i}"], data[f"gt{i}"], data[f"num_gt{i}"]
    for j, multi_contour in enumerate(((False, True), (False,))):
        found = analyse(maps, np.arange(0, 1, 0.01), gt, num_gt, True, multi_contour,
                        max_regions=1 << 30)
        for name in ("ious", "undecided", "status"):
            out[f"{name}{i}_{j}"] = getattr(found, name)
    boxes = [g[:n] for g, n in zip(gt, num_gt)]  # the plain path's box pass, numba too
    plain = max_box_ious_per_rule(maps, boxes, np.arange(0, 1, 0.01), method="cv2")
    out[f"cv2{i}"] = np.stack(plain)
    out[f"boundary{i}"] = np.array([cut_boundary(s8) for s8 in found.s8])
np.savez(sys.argv[2], **out)
"""


def _bounds_checked_env() -> dict:
    """The environment of the bounds-checked run: checks on, its own cache."""
    wsol = Path(__file__).parents[1] / "callbacks/wsol"
    sources = sorted(wsol.glob("level_sets/*.py")) + [wsol / "boxes.py"]
    digest = hashlib.sha1(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cache = Path(__file__).parent / "__pycache__" / "numba-boundscheck"
    for old in cache.glob("*"):
        if old.name != digest:
            shutil.rmtree(old, ignore_errors=True)
    return dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache / digest))


def test_analysis_under_bounds_checking(tmp_path):
    """Small maps of every family through the analysis (and the plain path's numba box pass)
    with numba's bounds checks: a buffer sized too small raises IndexError instead of writing
    past its end; results still cv2's."""
    rng = np.random.default_rng(12)
    cases = [
        rng.random((3, 24, 24)),  # pixel noise: many regions, holes, edges
        np.stack([ndi.gaussian_filter(m, 2.0) for m in rng.random((3, 32, 32))]),
        normalize_cams(torch.from_numpy(rng.random((3, 5, 5))), (40, 40)).numpy(),
        _structured(3, 5, size=40),
        _binary(3, 6, size=24),
        *[m[None] for m in _maps("thin")],
    ]
    cases = [m / m.max(axis=(1, 2), keepdims=True) for m in cases]
    arrays, boxes = {"count": len(cases)}, []
    for i, maps in enumerate(cases):
        boxes.append(_gt(len(maps), *maps.shape[1:], seed=i))
        arrays[f"maps{i}"] = maps
        arrays[f"gt{i}"], arrays[f"num_gt{i}"] = _pad_boxes(boxes[-1])
    np.savez(tmp_path / "in.npz", **arrays)
    run = subprocess.run(
        [sys.executable, "-c", _BOUNDS_CHECKED, str(tmp_path / "in.npz"), str(tmp_path / "out")],
        cwd=Path(__file__).parents[1],
        env=_bounds_checked_env(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = np.load(tmp_path / "out.npz")
    for i, maps in enumerate(cases):
        s8 = to_uint8(torch.from_numpy(maps))
        levels = _integer_levels(s8, np.arange(0, 1, 0.01)).numpy()
        expected = _reference(s8.numpy(), levels, boxes[i])
        for j in (0, 1):
            assert (found[f"status{i}_{j}"] == OK).all()
            ious, decided = found[f"ious{i}_{j}"], ~found[f"undecided{i}_{j}"]
            if j == 0:
                np.testing.assert_array_equal(ious[:, ALL], expected[:, ALL])
            np.testing.assert_array_equal(ious[:, LARGEST][decided], expected[:, LARGEST][decided])
        np.testing.assert_array_equal(found[f"cv2{i}"], expected.transpose(1, 0, 2))
        assert found[f"boundary{i}"].tolist() == [cut_boundary(m) for m in s8.numpy()]


def test_benchmark_family_table_agrees():
    """``make bench``'s family part: every method equals the loop; auto's choice as intended."""
    from benchmarks.bench_maxboxacc import family_table

    rows = dict(family_table(("blobs", "noisy_blobs"), 2, workers=1))
    for row in rows.values():
        assert all(row[f"{method}_equal"] == 1.0 for method in ("auto", "level_sets", "cv2"))
    assert rows["blobs"]["auto_analysed"] == 1.0 and rows["noisy_blobs"]["auto_analysed"] == 0.0
