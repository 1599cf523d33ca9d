"""The synthetic-face renderer and writer: determinism, designed statistics, locality, geometry."""

from __future__ import annotations

import dataclasses
import filecmp
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.formats import celeba as celeba_format
from datamodules.formats.ffhq import image_relpath
from datamodules.synthetic.__main__ import main as cli_main
from datamodules.synthetic.face_factors import (
    ATTRIBUTE_SPECS,
    NEGATIVE_CONTROLS,
    RENDERED_ATTRIBUTES,
    DetailCode,
    Expression,
    Identity,
    Pose,
    Style,
    with_attribute,
)
from datamodules.synthetic.face_geometry import face_box, landmarks
from datamodules.synthetic.face_render import render
from datamodules.synthetic.face_sampling import plan_faces
from datamodules.synthetic.faces import PRESETS, render_record

NO_DETAIL = DetailCode(0, amplitude=0.0)


@pytest.fixture(scope="module")
def sampled():
    """Factor sets only (no rendering): 2,000 identities x 2 images."""
    records = plan_faces(seed=7, identities=2000, clips=2, frames=1)
    names = celeba_format.ATTRIBUTE_NAMES
    table = np.array([[r.attributes[n] for n in names] for r in records], dtype=bool)
    return records, {n: table[:, j] for j, n in enumerate(names)}


def _tiny_records():
    cfg = PRESETS["tiny"]
    return plan_faces(0, cfg.identities, cfg.clips, cfg.frames, cfg.small_identities)


def test_same_seed_same_bytes_other_seed_differs(synthetic_faces_root, tmp_path):
    cli_main(["faces", "--out", str(tmp_path), "--preset", "tiny", "--seed", "0", "--workers", "2"])
    for layout in ("celeba", "ffhq"):
        ref = sorted(
            p.relative_to(synthetic_faces_root)
            for p in (synthetic_faces_root / layout).rglob("*")
            if p.is_file()
        )
        new = sorted(p.relative_to(tmp_path) for p in (tmp_path / layout).rglob("*") if p.is_file())
        assert ref == new and len(ref) > 20
        match, mismatch, errors = filecmp.cmpfiles(
            synthetic_faces_root, tmp_path, ref, shallow=False
        )
        assert not mismatch and not errors
    other = plan_faces(1, 2, 1, 2)
    same = plan_faces(0, 2, 1, 2)
    assert not np.array_equal(render_record(other[0]), render_record(same[0]))
    assert np.array_equal(render_record(same[0]), render_record(plan_faces(0, 2, 1, 2)[0]))


def test_prevalences_match_design(sampled):
    records, columns = sampled
    n_identities = 2000
    for name, spec in ATTRIBUTE_SPECS.items():
        rate = columns[name].mean()
        n = n_identities if spec.level == "identity" else len(records)
        tolerance = 4 * np.sqrt(spec.prevalence * (1 - spec.prevalence) / n) + 0.01
        assert abs(rate - spec.prevalence) < tolerance, (name, rate, spec.prevalence)
    for name in NEGATIVE_CONTROLS:
        assert 0.1 <= ATTRIBUTE_SPECS[name].prevalence <= 0.5
    assert len(NEGATIVE_CONTROLS) >= 5 and len(RENDERED_ATTRIBUTES) >= 15
    assert len(RENDERED_ATTRIBUTES) + len(NEGATIVE_CONTROLS) == 40


def test_designed_correlations_hold(sampled):
    _, c = sampled
    male = c["Male"]
    assert not (male & (c["Wearing_Lipstick"] | c["Heavy_Makeup"])).any()
    assert not ((c["Mustache"] | c["Goatee"] | c["Bald"]) & ~male).any()
    assert not (c["Gray_Hair"] & c["Young"]).any()
    hair = np.stack([c[n] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")])
    assert hair.sum(0).max() == 1 and not (c["Bald"] & hair.any(0)).any()
    assert not (c["Bald"] & c["Bangs"]).any()
    assert (c["No_Beard"] == ~(c["Mustache"] | c["Goatee"])).all()
    p_makeup = c["Heavy_Makeup"][c["Wearing_Lipstick"]].mean()
    assert abs(p_makeup - 0.9) < 0.03
    for name in NEGATIVE_CONTROLS:  # independent of a strong rendered attribute
        assert abs(c[name][male].mean() - c[name][~male].mean()) < 0.06, name


def test_negative_controls_do_not_change_pixels():
    record = _tiny_records()[5]
    flipped = dataclasses.replace(record, controls=tuple(not v for v in record.controls))
    assert all(record.attributes[n] != flipped.attributes[n] for n in NEGATIVE_CONTROLS)
    assert np.array_equal(render_record(record), render_record(flipped))


def _neutral_factors(male: bool = False):
    identity = Identity(male=male, hair_color="auburn", detail=NO_DETAIL)
    # arousal near 0: flipping Mouth_Slightly_Open opens the mouth (a step at 0) while the brows,
    # which follow arousal continuously, stay put
    return identity, Pose(), Expression(valence=-0.5, arousal=-0.02), Style()


@pytest.mark.parametrize("name", RENDERED_ATTRIBUTES)
def test_each_rendered_attribute_is_drawn_in_its_region(name):
    factors = _neutral_factors(male=name in ("Bald", "Mustache", "Goatee", "No_Beard"))
    off = render(*with_attribute(*factors, name, False))
    on = render(*with_attribute(*factors, name, True))
    diff = np.abs(on.astype(int) - off.astype(int)).sum(-1)
    x0, y0, x1, y1 = ATTRIBUTE_SPECS[name].region
    visible = diff > 60
    assert visible.sum() >= 20, f"{name} barely changes the image"
    inside = visible[y0:y1, x0:x1].sum() / visible.sum()
    assert inside >= 0.95, f"{name}: only {inside:.2f} of the visible change inside its region"
    mass = diff[y0:y1, x0:x1].sum() / diff.sum()  # sub-pixel shifts elsewhere stay small
    assert mass >= 0.8, f"{name}: only {mass:.2f} of the change mass inside its region"


def _pool(image: np.ndarray, block: int) -> np.ndarray:
    crop = image[45:173, 25:153].astype(np.float64)
    return crop.reshape(128 // block, block, 128 // block, block, 3).mean((1, 3))


def test_detail_code_vanishes_at_8_and_16_pixels_but_shows_at_128():
    for record in _tiny_records()[:40:8]:
        args = (record.identity, record.pose, record.expression, record.style)
        a, b = render(*args, detail=DetailCode(11)), render(*args, detail=DetailCode(12))
        none = render(*args, detail=NO_DETAIL)
        for block in (4, 8, 16):  # 32 x 32, 16 x 16 and 8 x 8 views of the 128 crop
            assert np.array_equal(_pool(a, block), _pool(b, block))
            assert np.array_equal(_pool(a, block), _pool(none, block))
        assert (np.abs(a.astype(int) - b.astype(int)) > 20).sum() > 300
        jpeg = [np.asarray(Image.open(_jpeg(x))) for x in (a, b)]
        assert np.abs(_pool(jpeg[0], 8) - _pool(jpeg[1], 8)).max() <= 2.0


def _jpeg(image: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95, subsampling=0)
    buffer.seek(0)
    return buffer


def test_landmarks_sit_on_the_rendered_features():
    identity = Identity(detail=NO_DETAIL, skin_tone=0.2)
    pose, expression, style = Pose(), Expression(-0.5, -0.5), Style(lipstick=True)
    marks = landmarks(identity, pose, expression)
    expected = [(69, 111), (108, 111), (88.5, 135), (72.5, 152), (104.5, 152)]
    assert np.abs(marks - np.array(expected)).max() <= 2.0
    image = render(identity, pose, expression, style).astype(int)
    ys, xs = np.nonzero((image.max(-1) < 40)[100:122, 55:125])  # pupils
    for side, mark in ((xs < 34, marks[0]), (xs >= 34, marks[1])):
        centre = np.array([xs[side].mean() + 55, ys[side].mean() + 100])
        assert np.abs(centre - mark).max() <= 1.5
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    ys, xs = np.nonzero((r > 150) & (g < 90) & (b < 110))  # lipstick
    assert abs(xs.min() - marks[3, 0]) <= 3 and abs(xs.max() - marks[4, 0]) <= 3
    box = face_box(Identity(chubby=True, male=True, jaw=1.0, face_width=1.04), pose)
    assert box[0] >= 25 and box[1] >= 45 and box[0] + box[2] <= 153 and box[1] + box[3] <= 173


def test_written_files_parse_and_match_the_factors(synthetic_faces_root):
    root = synthetic_faces_root / "celeba"
    index = celeba_format.read_celeba(root, bboxes=True, landmarks=True)
    records = _tiny_records()
    assert len(index.names) == len(records) <= 400
    expected = np.array([[r.attributes[n] for n in celeba_format.ATTRIBUTE_NAMES] for r in records])
    assert np.array_equal(index.attributes.numpy().astype(bool), expected)
    marks = np.stack([landmarks(r.identity, r.pose, r.expression).reshape(-1) for r in records])
    assert np.array_equal(index.landmarks.numpy(), np.round(marks).astype(int))
    ids, splits = index.identity.numpy(), index.partition.numpy()
    for identity in np.unique(ids):
        assert len(np.unique(splits[ids == identity])) == 1  # identity-disjoint
    counts = np.bincount(ids)[np.unique(ids)]
    assert (counts < 5).sum() >= 3 and (counts >= 10).sum() >= 30
    assert set(np.unique(splits)) == {0, 1, 2}
    image = Image.open(root / celeba_format.IMAGE_DIR / index.names[0])
    assert image.size == (178, 218) and image.mode == "RGB"
    header = (root / "synthetic_factors.csv").read_text().splitlines()[0].split(",")
    assert {"image_id", "identity", "clip", "yaw", "valence", "detail_seed", "Smiling"} <= set(
        header
    )
    rendered = [
        line.split(",") for line in (root / "synthetic_attributes.csv").read_text().split()[1:]
    ]
    assert {n for n, flag, *_ in rendered if flag == "1"} == set(RENDERED_ATTRIBUTES)


def test_ffhq_layout_has_tighter_framing(synthetic_faces_root):
    root: Path = synthetic_faces_root / "ffhq"
    files = sorted((root / "images1024x1024").rglob("*.png"))
    assert len(files) == 24 and files[3] == root / image_relpath(3)
    assert Image.open(files[0]).size == (256, 256)
    identity, pose, expression = Identity(), Pose(), Expression()
    celeba_eyes = np.diff(landmarks(identity, pose, expression)[:2, 0])[0] / 178
    ffhq = landmarks(identity, pose, expression, size=(256, 256), framing=1.3)
    assert np.diff(ffhq[:2, 0])[0] / 256 == pytest.approx(1.3 * celeba_eyes)
    assert abs(ffhq[:2, 0].mean() - 128) < 2


def test_writer_records_what_wrote_the_twin(synthetic_faces_root):
    import json

    from datamodules.synthetic.faces import MANIFEST_FILE, twin_fingerprint

    written = json.loads((synthetic_faces_root / MANIFEST_FILE).read_text())
    assert written == twin_fingerprint("tiny", 0)
    assert twin_fingerprint("tiny", 1) != written


def test_stale_twin_is_rewritten_and_foreign_data_left_alone(tmp_path, monkeypatch):
    import json

    import datamodules.synthetic.faces as faces

    calls = []
    monkeypatch.setattr(faces, "write_synthetic_faces", lambda out, preset, seed: calls.append(out))
    root = tmp_path / "celeba"
    root.mkdir()
    faces.ensure_twin(root, "celeba", "tiny", 0, present=True)  # no manifest: not ours, untouched
    assert calls == []
    manifest = tmp_path / faces.MANIFEST_FILE
    manifest.write_text(json.dumps(faces.twin_fingerprint("tiny", 0)))
    faces.ensure_twin(root, "celeba", "tiny", 0, present=True)  # up to date
    assert calls == []
    stale = {**faces.twin_fingerprint("tiny", 0), "renderer_sha256": "an older renderer"}
    manifest.write_text(json.dumps(stale))
    faces.ensure_twin(root, "celeba", "tiny", 0, present=True)
    assert calls == [tmp_path]
    faces.ensure_twin(tmp_path / "new" / "ffhq", "ffhq", "tiny", 0, present=False)
    assert calls == [tmp_path, tmp_path / "new"]
    with pytest.raises(ValueError, match="must end in 'ffhq'"):
        faces.ensure_twin(tmp_path / "faces", "ffhq", "tiny", 0, present=False)


def test_writing_a_twin_into_a_log_file_prints_plain_lines(tmp_path, capsys):
    """Under sbatch, nohup or a pipe, the rich bar would print once at the end: plain lines."""
    from datamodules.synthetic.faces import write_synthetic_faces

    write_synthetic_faces(tmp_path, preset="tiny", seed=0, workers=1, progress=True)
    lines = capsys.readouterr().out.splitlines()  # pytest's captured stdout is no terminal
    assert any(line.startswith("CelebA twin: writing") for line in lines)
    assert any(line.startswith("CelebA twin: 330/330 done") for line in lines)
    assert not any("━" in line for line in lines)
