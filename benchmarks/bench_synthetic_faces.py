"""Benchmark: synthetic-face throughput per CPU core (target: 100 images/s at 178 x 218).

Renders factor sets drawn by the real sampler in one process with OpenCV pinned to one thread,
once without and once with the JPEG encode that ``write_synthetic_faces`` does (quality 95, no
chroma subsampling, in memory). The encode alone is timed in the same run as the baseline, so the
ratio says how many encodes one render costs.

Run: ``python -m benchmarks.bench_synthetic_faces --images 500``.
"""

from __future__ import annotations

import argparse
import io
import time

import cv2
from PIL import Image

from datamodules.synthetic.face_render import render
from datamodules.synthetic.face_sampling import plan_faces


def _rate(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def _jpeg(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Time render, render + JPEG, and JPEG alone; print one line and return the rates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    records = plan_faces(args.seed, identities=max(1, args.images // 20), clips=4, frames=5)
    records = records[: args.images]

    def draw(r):
        return render(r.identity, r.pose, r.expression, r.style)

    draw(records[0])  # warm-up (pattern caches, lazy imports)
    images = [draw(r) for r in records[:50]]
    rates = {
        "render": _rate(draw, records),
        "render_jpeg": _rate(lambda r: _jpeg(draw(r)), records),
        "jpeg_only": _rate(_jpeg, images * max(1, len(records) // len(images))),
    }
    print(
        f"synthetic faces 178x218, 1 core: render {rates['render']:.0f} img/s, "
        f"render+jpeg {rates['render_jpeg']:.0f} img/s (target 100), "
        f"jpeg alone {rates['jpeg_only']:.0f} img/s, render costs "
        f"{rates['jpeg_only'] / rates['render']:.1f} encodes"
    )
    return rates


if __name__ == "__main__":
    main()
