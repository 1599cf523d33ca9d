"""FFHQ readers (nested, thumbnail and flat layouts, metadata) and the resized cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_image, write_png

from datamodules.formats import ffhq as fmt
from datamodules.formats.errors import DatasetNotFoundError, FormatError


def write_image(path: Path, index: int, size: int = 40) -> torch.Tensor:
    """A deterministic RGB image (a smooth pattern seeded by ``index``) saved as PNG."""
    g = torch.Generator().manual_seed(index)
    coarse = torch.randint(0, 256, (3, 5, 5), generator=g, dtype=torch.uint8)
    image = torch.nn.functional.interpolate(coarse[None].float(), size=(size, size), mode="bicubic")
    image = image[0].clamp(0, 255).round().to(torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(image, str(path))
    return image


def make_nested(root: Path, indices: list[int], folder: str = fmt.IMAGES_1024) -> Path:
    for i in indices:
        write_image(root / fmt.image_relpath(i, folder), i)
    return root


def test_image_relpath():
    assert fmt.image_relpath(0) == Path("images1024x1024/00000/00000.png")
    assert fmt.image_relpath(1234) == Path("images1024x1024/01000/01234.png")
    assert fmt.image_relpath(69999, fmt.THUMBNAILS_128) == Path("thumbnails128x128/69000/69999.png")


def test_nested_layout_sorted(tmp_path: Path):
    make_nested(tmp_path, [1002, 3, 0, 69999])
    (tmp_path / "LICENSE.txt").write_text("CC BY-NC-SA 4.0")  # top-level files are ignored
    images = fmt.list_ffhq_images(tmp_path)
    assert [i for i, _ in images] == [0, 3, 1002, 69999]
    assert images[2][1] == tmp_path / "images1024x1024/01000/01002.png"


def test_images_win_over_thumbnails(tmp_path: Path):
    make_nested(tmp_path, [5], fmt.THUMBNAILS_128)
    assert fmt.list_ffhq_images(tmp_path)[0][1].parts[-3] == fmt.THUMBNAILS_128
    make_nested(tmp_path, [7])
    assert fmt.list_ffhq_images(tmp_path) == [(7, tmp_path / fmt.image_relpath(7))]


def test_nested_folder_given_directly_and_flat(tmp_path: Path):
    make_nested(tmp_path, [10, 2000])
    assert [i for i, _ in fmt.list_ffhq_images(tmp_path / fmt.IMAGES_1024)] == [10, 2000]
    flat = tmp_path / "flat"
    for i in (42, 7):
        write_image(flat / f"{i:05d}.png", i)
    (flat / "notes.txt").write_text("not an image")
    assert fmt.list_ffhq_images(flat) == [(7, flat / "00007.png"), (42, flat / "00042.png")]


def test_bad_name_in_nested_folder(tmp_path: Path):
    make_nested(tmp_path, [1])
    bad = tmp_path / "images1024x1024/00000/img_2.png"
    write_image(bad, 2)
    with pytest.raises(FormatError, match=f"^{bad}: not an FFHQ image name"):
        fmt.list_ffhq_images(tmp_path)


def test_image_in_wrong_folder(tmp_path: Path):
    bad = tmp_path / "images1024x1024/01000/02001.png"
    write_image(bad, 1)
    with pytest.raises(FormatError, match=f"^{bad}: image 02001 belongs in folder 00200"):
        fmt.list_ffhq_images(tmp_path)


def test_folder_not_multiple_of_1000(tmp_path: Path):
    write_image(tmp_path / "images1024x1024/00500/00500.png", 1)
    with pytest.raises(FormatError, match="00500: FFHQ folders are named by multiples of 1000"):
        fmt.list_ffhq_images(tmp_path)


def test_no_images_names_the_folder(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        fmt.list_ffhq_images(tmp_path / "empty")
    assert f"No NNNNN.png under {tmp_path / 'empty'}" in str(info.value)
    (tmp_path / "images1024x1024").mkdir()
    with pytest.raises(DatasetNotFoundError, match="images1024x1024 is empty"):
        fmt.list_ffhq_images(tmp_path)


def test_missing_root_says_where_to_get_ffhq(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as info:
        fmt.list_ffhq_images(tmp_path / "nowhere")
    message = str(info.value)
    assert "github.com/NVlabs/ffhq-dataset" in message and "download_ffhq.py --images" in message
    assert "Google Drive" in message and "images1024x1024/" in message


def test_metadata(tmp_path: Path):
    path = tmp_path / fmt.METADATA_FILE
    record = {"category": "training", "image": {"file_path": "images1024x1024/00000/00000.png"}}
    path.write_text(json.dumps({"0": record, "1": {"category": "validation"}}, indent=2))
    metadata = fmt.read_ffhq_metadata(path)
    assert sorted(metadata) == [0, 1] and metadata[0] == record


def test_metadata_invalid_json_names_line(tmp_path: Path):
    path = tmp_path / fmt.METADATA_FILE
    path.write_text('{\n  "0": {"category": "training"},\n  "1": {"category": }\n}\n')
    with pytest.raises(FormatError, match=f"^{path}:3: invalid JSON"):
        fmt.read_ffhq_metadata(path)


def test_metadata_bad_key(tmp_path: Path):
    path = tmp_path / fmt.METADATA_FILE
    path.write_text(json.dumps({"zero": {}}))
    with pytest.raises(FormatError, match="key 'zero' is not an image index"):
        fmt.read_ffhq_metadata(path)


# ----------------------------------------------------------------------------------------------
# Resized cache
# ----------------------------------------------------------------------------------------------


def test_cache_matches_an_antialiased_reference(tmp_path: Path):
    make_nested(tmp_path, [0, 1, 1500])
    out = fmt.build_resized_cache(tmp_path, 16)
    assert out == tmp_path / "cache_16"
    cached = fmt.list_ffhq_images(out)
    assert [i for i, _ in cached] == [0, 1, 1500]
    assert cached[2][1] == out / "01000/01500.png"
    for index, path in cached:
        image = decode_image(str(path))
        assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
        # Independent reference: PIL's antialiased bilinear reduction of the 40 px source.
        source = Image.open(tmp_path / fmt.image_relpath(index))
        reference = np.asarray(source.resize((16, 16), Image.BILINEAR)).astype(int)
        diff = np.abs(image.permute(1, 2, 0).numpy().astype(int) - reference)
        assert diff.max() <= 3, (index, diff.max())
    manifest = fmt.read_cache_manifest(out)
    assert manifest["res"] == 16 and manifest["count"] == 3


def test_cache_is_idempotent(tmp_path: Path, monkeypatch):
    make_nested(tmp_path, [0, 1])
    out = fmt.build_resized_cache(tmp_path, 8)
    stamp = (out / "00000/00001.png").stat().st_mtime_ns

    def fail(job):
        raise AssertionError(f"cache rebuilt {job}")

    monkeypatch.setattr(fmt, "_resize_one", fail)
    assert fmt.build_resized_cache(tmp_path, 8) == out
    assert (out / "00000/00001.png").stat().st_mtime_ns == stamp


def test_changed_source_invalidates_cache(tmp_path: Path):
    make_nested(tmp_path, [0, 1, 2])
    out = fmt.build_resized_cache(tmp_path, 8)
    (tmp_path / fmt.image_relpath(2)).unlink()
    write_image(tmp_path / fmt.image_relpath(5), 5)
    new = write_image(tmp_path / fmt.image_relpath(0), 99)  # same name, new content
    os.utime(tmp_path / fmt.image_relpath(0), ns=(1, 1))
    fmt.build_resized_cache(tmp_path, 8)
    assert [i for i, _ in fmt.list_ffhq_images(out)] == [0, 1, 5]  # 2 removed, 5 added
    rebuilt = decode_image(str(out / "00000/00000.png")).float()
    expected = torch.nn.functional.interpolate(
        new[None].float(), size=(8, 8), mode="bilinear", antialias=True
    )[0]
    assert (rebuilt - expected).abs().max() <= 1
    assert fmt.read_cache_manifest(out)["count"] == 3


def test_cache_of_unreadable_image_names_it(tmp_path: Path):
    make_nested(tmp_path, [0])
    bad = tmp_path / fmt.image_relpath(1)
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(FormatError, match=f"^{bad}: cannot decode image"):
        fmt.build_resized_cache(tmp_path, 8)
    assert fmt.read_cache_manifest(tmp_path / "cache_8") is None  # unfinished: no manifest


@pytest.mark.slow
def test_cache_with_worker_processes(tmp_path: Path):
    make_nested(tmp_path, list(range(6)))
    serial = fmt.build_resized_cache(tmp_path, 8, out=tmp_path / "serial")
    parallel = fmt.build_resized_cache(tmp_path, 8, out=tmp_path / "parallel", workers=2)
    for i in range(6):
        a = (serial / f"00000/{i:05d}.png").read_bytes()
        assert a == (parallel / f"00000/{i:05d}.png").read_bytes()
