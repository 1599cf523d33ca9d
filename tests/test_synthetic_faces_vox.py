"""The face twin's clip tree ``vox/``: the sidecar's training identities with clips, frame for
frame the CelebA twin's JPEGs and landmark rows, style constant inside a clip."""

from __future__ import annotations

import csv
import json
from collections import Counter

import torch

from datamodules.formats import celeba as celeba_format
from datamodules.formats.clip_tree import read_clip_tree
from datamodules.synthetic.faces import MANIFEST_FILE, PRESETS


def _sidecar(root) -> list[dict]:
    with open(root / "celeba" / "synthetic_factors.csv") as f:
        return list(csv.DictReader(f))


def test_vox_tree_holds_the_training_identities_clip_by_clip(synthetic_faces_root):
    rows = _sidecar(synthetic_faces_root)
    cfg = PRESETS["tiny"]
    images_of = Counter(r["identity"] for r in rows)
    # identities with clips have clips x frames = 2 x 5 images; the small ones 3 or 4
    clipped = {i for i, n in images_of.items() if n == cfg.clips * cfg.frames}
    assert len(clipped) == cfg.identities
    expected = {
        f"id{int(r['identity']):05d}/clip{int(r['clip']):02d}/{int(r['frame']):05d}.jpg": r
        for r in rows
        if r["identity"] in clipped and r["split"] == "0"
    }
    index = read_clip_tree(synthetic_faces_root / "vox")
    assert set(index.paths) == set(expected) and len(index.paths) == len(expected) > 100
    assert not any(r["split"] != "0" for r in expected.values())  # no evaluation identity
    celeba = celeba_format.read_celeba(synthetic_faces_root / "celeba", landmarks=True)
    for k, path in enumerate(index.paths):
        row = expected[path]
        frame = synthetic_faces_root / "vox" / path
        assert frame.read_bytes() == (celeba.image_dir / row["image_id"]).read_bytes()
        j = celeba.names.index(row["image_id"])
        assert torch.equal(index.landmarks[k], celeba.landmarks[j])
        assert index.identity_names[index.identity[k]] == f"id{int(row['identity']):05d}"
    # clip indices: one per (identity, clip), and the twin's style is constant inside a clip
    assert len(index.clip_names) == len({(r["identity"], r["clip"]) for r in expected.values()})
    for c in range(len(index.clip_names)):
        members = [expected[index.paths[k]] for k in torch.nonzero(index.clip == c).flatten()]
        assert len(members) == cfg.frames
        assert len({(m["identity"], m["clip"]) for m in members}) == 1
        assert len({(m["style_bg_hue"], m["style_light_angle"]) for m in members}) == 1


def test_the_manifest_names_the_layouts(synthetic_faces_root):
    written = json.loads((synthetic_faces_root / MANIFEST_FILE).read_text())
    assert written["layouts"] == ["celeba", "ffhq", "vox"]
