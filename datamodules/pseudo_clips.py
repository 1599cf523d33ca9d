"""Pseudo-clips of CelebA: one image and jittered views of it, the [SUBST] for VoxCeleb's clips.

The disentangled AAE learns its style sub-vector from clips (disentangle spec, sections 2 and 4):
style is constant inside a clip and varies between clips of one person. Real CelebA has no clips,
so a pseudo-clip is ONE CelebA image and ``views - 1`` jittered views of it (``FaceView``:
mirrored with probability ``flip_probability``, rotated by up to ``max_degrees`` and shifted by up
to ``max_shift`` pixels, all on the uint8 crop before the transform), and the other clips of a
person are its other images. Real clips of a clip tree are served by
``datamodules/clip_faces.py``.

``PseudoClips(faces)`` has ``views`` items per image of ``faces`` (a ``PosedFaces`` split): item
``k`` is view ``k % views`` of image ``k // views``; view 0 is the image itself, the others are
drawn anew at each access (torch's global generator: a DataLoader worker's own seed). Its
``identities`` and ``clips`` label every item, for ``datamodules.samplers.ClipSetSampler``, which
cuts P persons x C clips x F frames batches (persons need C or more images).

Items: ``image`` float (3, S, S) (the transform's range), ``pose`` float (3,) yaw, pitch, roll in
radians of the view (``FaceView.pose`` of the source image's pose: mirrored views have yaw and
roll negated, a rotation by t degrees adds t to roll), ``identity`` long, ``clip`` long (the
source image's position in ``faces``: one clip per image), ``frame`` long (the view number),
``view`` float (4,) ``(flip, dx, dy, degrees)``, ``image_id`` str (the source image).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from datamodules.face_views import FaceView, draw_view, read_view
from datamodules.posed_faces import PosedFaces

__all__ = ["PseudoClips"]


class PseudoClips(Dataset):
    """Every image of a face split as a clip of ``views`` frames: itself and jittered views.

    Args:
        faces: The split (its images, crop box, transform, luminance equalisation, identities
            and poses are used; its own ``flip_probability`` is not).
        views: Frames per pseudo-clip (the image and ``views - 1`` jittered views).
        max_shift: Largest shift of a view in pixels (the spec: 4).
        max_degrees: Largest rotation of a view in degrees (the spec: 3).
        flip_probability: Chance that a view is mirrored (its pose mirrored with it).

    Raises:
        ValueError: ``views`` below 1, or a bad jitter bound (``draw_view``'s checks).
    """

    def __init__(
        self,
        faces: PosedFaces,
        views: int = 5,
        max_shift: int = 4,
        max_degrees: float = 3.0,
        flip_probability: float = 0.5,
    ) -> None:
        if views < 1:
            raise ValueError(f"views must be at least 1 (the image itself), got {views}")
        draw_view(max_shift, max_degrees, flip_probability)  # checks the bounds
        self.faces, self.views = faces, views
        self.jitter = (max_shift, max_degrees, flip_probability)
        self.identities = faces.identities.repeat_interleave(views)  # long (N * views,)
        self.clips = torch.arange(len(faces)).repeat_interleave(views)  # long (N * views,)

    def __len__(self) -> int:
        return len(self.faces) * self.views

    def __getitem__(self, k: int) -> dict:
        row, frame = divmod(k, self.views)
        faces = self.faces
        view = FaceView() if frame == 0 else draw_view(*self.jitter)
        crop = read_view(faces.image_dir / faces.names[row], faces.crop, view, faces.hist_eq)
        return {
            "image": faces.transform(crop),
            "pose": view.pose(faces.poses[row]),
            "identity": faces.identities[row],
            "clip": torch.tensor(row),
            "frame": torch.tensor(frame),
            "view": view.as_tensor(),
            "image_id": faces.names[row],
        }
