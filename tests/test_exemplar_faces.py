"""The exemplar-faces twin (spec hallucination.md section 9): zero-sum detail tiles, detail
invisible at 16 and 8 px after JPEG (H1), regions on uniform skin for every nuisance draw, the
CelebA layout read by the CelebA readers, determinism, the small identities."""

from __future__ import annotations

import dataclasses
import filecmp
import itertools

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from datamodules.celeba import CROP_BOXES, check_image_files, cut_box
from datamodules.exemplar_sets import downsample
from datamodules.formats import celeba as celeba_format
from datamodules.formats.exemplar_regions import SIDECAR_FILE, read_region_boxes
from datamodules.images import read_rgb
from datamodules.prepare import main as prepare_main
from datamodules.synthetic.exemplar_faces import (
    CROP_LEFT,
    CROP_TOP,
    PATTERNS,
    PRESETS,
    REGION_BOXES,
    SHIFTS,
    DetailCode,
    Nuisance,
    coarse_traits,
    detail_code,
    detail_pattern,
    draw_nuisance,
    paint,
    render,
)

NO_DETAIL = DetailCode((0,) * len(REGION_BOXES), (0.0, 0.0, 0.0))


def _tiles(a: np.ndarray) -> np.ndarray:
    """Sums of the 4 x 4 tiles of (H, W, ...) ``a``."""
    h, w = a.shape[:2]
    return a.reshape(h // 4, 4, w // 4, 4, *a.shape[2:]).sum((1, 3))


def _region(image: np.ndarray, box) -> np.ndarray:
    top, left, height, width = box
    rows = slice(CROP_TOP + top, CROP_TOP + top + height)
    return image[rows, CROP_LEFT + left : CROP_LEFT + left + width]


@pytest.mark.parametrize("kind", range(len(PATTERNS)))
def test_every_pattern_is_plus_minus_one_with_zero_sum_tiles(kind):
    pattern = detail_pattern(kind, 32, 32)
    assert set(np.unique(pattern)) == {-1, 1}
    assert not _tiles(pattern.astype(int)).any()


def test_rendered_detail_has_zero_sum_tiles_and_leaves_the_rest_alone():
    for identity in range(1, 6):
        nuisance = draw_nuisance(np.random.default_rng(identity))
        detail = render(identity, identity, nuisance).astype(int)
        plain = paint(coarse_traits(identity), NO_DETAIL, nuisance).astype(int)
        added = detail - plain
        amplitude = detail_code(identity).amplitude
        for box in REGION_BOXES:
            part = _region(added, box)
            assert not _tiles(part).any()  # every 4 x 4 tile, each channel
            assert np.array_equal(np.abs(part), np.broadcast_to(np.abs(amplitude), part.shape))
            _region(added, box)[:] = 0
        assert not added.any()  # nothing outside the regions


def test_regions_stay_on_uniform_skin_for_every_nuisance_draw():
    base = coarse_traits(1)
    variants = [
        dataclasses.replace(base, size=size, male=male, eyeglasses=glasses)
        for size, male, glasses in itertools.product((0.95, 1.05), (False, True), (False, True))
    ]
    for traits, (dy, dx), mouth, gain in itertools.product(
        variants, itertools.product(SHIFTS, SHIFTS), (2.0, 5.0), (0.9, 1.1)
    ):
        image = paint(traits, NO_DETAIL, Nuisance(gain, dy, dx, mouth))
        skin = np.rint(np.asarray(traits.skin) * gain * 255)
        for box in REGION_BOXES:
            assert (_region(image, box) == skin).all(), (box, dy, dx, traits)


def test_detail_is_invisible_at_16_and_8_px_after_jpeg(tmp_path):
    """H1: equal coarse parameters, different detail codes -> max |LR difference| <= 2/255."""
    rng = np.random.default_rng(0)
    worst = {16: 0.0, 8: 0.0}
    for pair in range(40):
        nuisance, coarse = draw_nuisance(rng), int(rng.integers(1, 10**6))
        crops = []
        for side, detail in enumerate(rng.integers(1, 10**6, 2).tolist()):
            path = tmp_path / f"{pair}_{side}.jpg"
            Image.fromarray(render(coarse, detail, nuisance)).save(
                path, format="JPEG", quality=95, subsampling=0
            )
            crops.append(cut_box(read_rgb(path), CROP_BOXES["face128"], path).float() / 255)
        assert (crops[0] - crops[1]).abs().max() > 0.2  # the detail is plain at 128 px
        for size in worst:
            low = [downsample(c, size) for c in crops]
            worst[size] = max(worst[size], float((low[0] - low[1]).abs().max()))
    assert worst[16] <= 2 / 255 and worst[8] <= 2 / 255, {k: v * 255 for k, v in worst.items()}


def test_coarse_identities_differ_at_8_px():
    """The coarse traits are what an 8 px input shows: distinct identities differ clearly there."""
    nuisance = Nuisance()

    def low(identity: int) -> torch.Tensor:
        image = torch.from_numpy(render(identity, 1, nuisance)).permute(2, 0, 1).float() / 255
        return downsample(cut_box(image, CROP_BOXES["face128"], "render"), 8)

    images = [low(identity) for identity in range(1, 11)]
    gaps = [float((a - b).abs().mean()) for a, b in itertools.combinations(images, 2)]
    assert min(gaps) > 10 / 255


def test_render_mixes_the_coarse_and_detail_of_two_identities():
    nuisance = Nuisance(1.05, 4, -4, 3.0)
    mixed = render(1, 2, nuisance).astype(int)
    plain = paint(coarse_traits(1), NO_DETAIL, nuisance).astype(int)
    donor = render(2, 2, nuisance).astype(int) - paint(coarse_traits(2), NO_DETAIL, nuisance)
    assert np.array_equal(mixed - plain, donor)  # the detail of 2 on the face of 1


def test_twin_is_read_by_the_celeba_readers(exemplar_faces_root):
    cfg = PRESETS["tiny"]
    index = celeba_format.read_celeba(exemplar_faces_root)
    check_image_files(index)
    assert len(index.names) == sum(cfg.identities) * cfg.images + 3 + 4 + 3 + 4 + 3
    image = Image.open(index.image_dir / index.names[0])
    assert image.size == (178, 218) and JpegImagePlugin.get_sampling(image) == 0
    male, glasses = (celeba_format.ATTRIBUTE_NAMES.index(n) for n in ("Male", "Eyeglasses"))
    assert 0 < index.attributes[:, male].float().mean() < 1
    assert 0 < index.attributes[:, glasses].float().mean() < 1
    others = [j for j in range(40) if j not in (male, glasses)]
    assert not index.attributes[:, others].any()
    for identity in index.identity.unique():  # identity-level traits: one value per identity
        rows = index.identity == identity
        assert index.attributes[rows][:, [male, glasses]].unique(dim=0).shape[0] == 1
        assert index.partition[rows].unique().numel() == 1
    counts = index.identity.unique(return_counts=True)[1]
    assert sorted(counts[counts < 5].tolist()) == [3, 3, 3, 4, 4]  # the five small identities
    boxes = read_region_boxes(exemplar_faces_root / SIDECAR_FILE, index.names)
    assert (boxes == torch.tensor(REGION_BOXES)).all()


def test_same_seed_same_bytes_other_seed_differs(exemplar_faces_root, tmp_path):
    prepare_main(["synthetic-exemplar-faces", "--out", str(tmp_path / "a"), "--preset", "tiny"])
    names = ["img_align_celeba/000001.jpg", "img_align_celeba/000257.jpg", SIDECAR_FILE]
    names += [celeba_format.ATTR_FILE, celeba_format.IDENTITY_FILE, celeba_format.PARTITION_FILE]
    match, mismatch, errors = filecmp.cmpfiles(exemplar_faces_root, tmp_path / "a", names, False)
    assert match == names, (mismatch, errors)
    from datamodules.synthetic.exemplar_faces import make_exemplar_faces

    make_exemplar_faces(tmp_path / "b", preset="tiny", seed=1)
    assert not filecmp.cmp(tmp_path / "a" / names[0], tmp_path / "b" / names[0], shallow=False)
