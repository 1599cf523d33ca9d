"""Style clips on the tiny twin: pseudo-clips of CelebA (one image and its jittered views) and the
real clips of the twin's vox/ tree, both cut into P persons x C clips x F frames by
ClipSetSampler: the structure, single-image clips, bounded jitter, pose-corrected views."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from test_face_views import _pil_view
from torch.utils.data import DataLoader

from datamodules.celeba import CROP_BOXES
from datamodules.clip_faces import ClipTreeFaces
from datamodules.disentangled_aae import DisentangledAAEDataModule
from datamodules.face_views import FaceView
from datamodules.formats.clip_tree import read_clip_tree
from datamodules.head_pose import pose_from_landmarks
from datamodules.images import read_rgb, square_transform
from datamodules.pseudo_clips import PseudoClips
from datamodules.samplers import ClipSetSampler

P, C, F = 3, 2, 3
FACE128 = CROP_BOXES["face128"]


@pytest.fixture(scope="module")
def faces(synthetic_faces_root):
    """The twin's training split as the Stage A data module serves it (32 px, never mirrored)."""
    dm = DisentangledAAEDataModule(
        root=str(synthetic_faces_root / "celeba"),
        image_size=32,
        hist_eq=False,
        flip_probability=0.0,
        num_workers=0,
    )
    dm.setup("fit")
    return dm.splits["train"]


def _first_batch(dataset, sampler) -> dict:
    return next(iter(DataLoader(dataset, sampler=sampler, batch_size=sampler.batch_size)))


def _check_clip_sets(batch: dict, f: int) -> None:
    """P distinct persons x C distinct clips x f frames, in that order."""
    persons = batch["identity"].view(P, C * f)
    assert (persons == persons[:, :1]).all() and persons[:, 0].unique().numel() == P
    clips = batch["clip"].view(P, C, f)
    assert (clips == clips[..., :1]).all()
    assert all(row.unique().numel() == C for row in clips[..., 0])


def test_pseudo_clip_batches_are_views_of_one_image(faces):
    clips = PseudoClips(faces, views=F)
    assert len(clips) == F * len(faces)
    sampler = ClipSetSampler(clips.identities, clips.clips, P, C, F, num_batches=1, seed=0)
    torch.manual_seed(0)
    batch = _first_batch(clips, sampler)
    assert batch["image"].shape == (P * C * F, 3, 32, 32)
    _check_clip_sets(batch, F)
    # a clip is one source image, all its views (frame numbers 0 ... F-1)
    ids = [batch["image_id"][i : i + F] for i in range(0, P * C * F, F)]
    assert all(len(set(clip)) == 1 for clip in ids) and len({c[0] for c in ids}) == P * C
    assert (batch["frame"].view(P * C, F) == torch.arange(F)).all()
    views = batch["view"]  # (B, 4) flip, dx, dy, degrees
    assert views[:, 1:3].abs().max() <= 4 and views[:, 3].abs().max() <= 3.0
    assert (views[batch["frame"] == 0] == 0).all()  # frame 0 is the image itself
    for i in range(P * C * F):
        row = faces.names.index(batch["image_id"][i])
        source = faces[row]  # never mirrored: flip_probability 0
        flip, dx, dy, degrees = views[i].tolist()
        # the pose of the source, yaw and roll negated when mirrored, plus the rotation in roll
        sign = torch.tensor([-1.0, 1.0, -1.0]) if flip else torch.ones(3)
        expected = source["pose"] * sign + torch.tensor([0.0, 0.0, math.radians(degrees)])
        torch.testing.assert_close(batch["pose"][i], expected)
        assert batch["identity"][i] == source["identity"]
        if batch["frame"][i] == 0:
            assert torch.equal(batch["image"][i], source["image"])
        else:  # the pixels: an independent PIL rendering of the recorded view, then the resize
            image = read_rgb(faces.image_dir / faces.names[row])
            view = FaceView(bool(flip), int(dx), int(dy), degrees)
            reference = faces.transform(_pil_view(image, FACE128, view))
            assert (batch["image"][i] - reference).abs().mean() < 0.008  # 3 degrees off: > 0.02


def test_persons_need_c_images(faces):
    clips = PseudoClips(faces, views=1)
    # the twin's small identities 33 and 35 have 3 training images, 34 has 4
    with pytest.warns(UserWarning, match=r"2 persons have fewer than 4 clips .*\[33, 35\]"):
        sampler = ClipSetSampler(clips.identities, clips.clips, 5, 4, 1, num_batches=20)
    drawn = {int(clips.identities[i]) for batch in sampler.batches() for i in batch}
    assert not drawn & {33, 35} and len(drawn) > 10
    with pytest.raises(ValueError, match="views must be at least 1"):
        PseudoClips(faces, views=0)
    with pytest.raises(ValueError, match="max_shift"):
        PseudoClips(faces, max_shift=-1)


def test_clip_tree_batches_are_real_clips(synthetic_faces_root, faces):
    index = read_clip_tree(synthetic_faces_root / "vox")
    transform = square_transform(32, "signed")
    frames = ClipTreeFaces(index, transform, FACE128, flip_probability=0.5)
    sampler = ClipSetSampler(frames.identities, frames.clips, P, C, 4, num_batches=1, seed=3)
    torch.manual_seed(1)
    batch = _first_batch(frames, sampler)
    _check_clip_sets(batch, 4)
    paths = batch["image_id"]
    for i in range(0, P * C * 4, 4):  # one folder per clip, 4 distinct frames of its 5
        folders = {p.rsplit("/", 1)[0] for p in paths[i : i + 4]}
        assert len(folders) == 1 and len(set(paths[i : i + 4])) == 4
    with open(synthetic_faces_root / "celeba" / "synthetic_factors.csv") as f:
        picture = {
            f"id{int(r['identity']):05d}/clip{int(r['clip']):02d}/{int(r['frame']):05d}.jpg": r
            for r in csv.DictReader(f)
        }
    assert 0 < int(batch["flipped"].sum()) < P * C * 4
    for i, path in enumerate(paths):
        k = index.paths.index(path)
        fitted = pose_from_landmarks(index.landmarks[k : k + 1])[0].float()
        sign = torch.tensor([-1.0, 1.0, -1.0]) if batch["flipped"][i] else torch.ones(3)
        torch.testing.assert_close(batch["pose"][i], fitted * sign)
        # the frame is the CelebA twin's picture: the Stage A item, mirrored when flipped
        same = faces[faces.names.index(picture[path]["image_id"])]
        expected = same["image"].flip(-1) if batch["flipped"][i] else same["image"]
        assert torch.equal(batch["image"][i], expected)
        assert index.identity_names[batch["identity"][i]] == path.split("/")[0]
        assert index.clip_names[batch["clip"][i]] == path.rsplit("/", 1)[0]
    with pytest.raises(ValueError, match=r"poses must be \(210, 3\)"):
        ClipTreeFaces(index, transform, FACE128, poses=torch.zeros(3, 3))
