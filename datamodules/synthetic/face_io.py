"""Rendering and saving planned faces; a torch-free module so worker processes start fast."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datamodules.synthetic.face_geometry import FRAME, face_box, landmarks
from datamodules.synthetic.face_render import render
from datamodules.synthetic.face_sampling import FaceRecord


def render_record(
    record: FaceRecord, size: tuple[int, int] = FRAME, framing: float = 1.0
) -> np.ndarray:
    """Render one planned image exactly as the writer does (uint8 H x W x 3)."""
    return render(
        record.identity, record.pose, record.expression, record.style, None, size, framing
    )


def render_chunk(chunk: list) -> np.ndarray:
    """Render, encode and write each (format, path, record, size, framing); (n, 14) geometry."""
    rows = []
    for fmt, path, r, size, framing in chunk:
        image = Image.fromarray(render_record(r, size, framing))
        if fmt == "jpg":
            image.save(path, format="JPEG", quality=95, subsampling=0)
        else:
            image.save(path, format="PNG", compress_level=3)
        points = landmarks(r.identity, r.pose, r.expression, size, framing).reshape(-1)
        rows.append(np.concatenate([points, face_box(r.identity, r.pose, size, framing)]))
    return np.round(np.stack(rows)).astype(np.int64)
