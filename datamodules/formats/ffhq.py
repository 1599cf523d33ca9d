"""FFHQ's released on-disk format (NVlabs/ffhq-dataset), read and written.

Layouts accepted under a root folder:

    images1024x1024/00000/00000.png ... 69000/69999.png     folders of 1,000, PNG 1024 x 1024
    thumbnails128x128/00000/00000.png ...                   the released 128 px thumbnails
    <flat folder>/00000.png ...                             any folder of NNNNN.png

plus, when present, ``ffhq-dataset-v2.json`` (the release's metadata, keyed by image index).
"""

from __future__ import annotations

from pathlib import Path

IMAGES_1024 = "images1024x1024"
THUMBNAILS_128 = "thumbnails128x128"
METADATA_FILE = "ffhq-dataset-v2.json"


def image_relpath(index: int, folder: str = IMAGES_1024) -> Path:
    """Release path of image ``index`` (0-based): ``image_relpath(1234) == images1024x1024/01000/01234.png``."""
    return Path(folder) / f"{index // 1000 * 1000:05d}" / f"{index:05d}.png"
