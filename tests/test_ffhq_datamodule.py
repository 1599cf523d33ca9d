"""FFHQDataModule on a self-made FFHQ root: source images, the resized cache, batches, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from datamodules.ffhq import FFHQDataModule
from datamodules.formats import ffhq as fmt
from datamodules.formats.errors import DatasetNotFoundError, FormatError
from datamodules.prepare import main as prepare

INDICES = [0, 3, 7, 999, 1000, 1001, 2500, 2501, 2502, 69999]


def write_ffhq(root: Path, indices: list[int] = INDICES, size: int = 48) -> None:
    """Solid images whose red value encodes the index: red = index % 251."""
    for i in indices:
        path = root / fmt.image_relpath(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        image = torch.zeros(3, size, size, dtype=torch.uint8)
        image[0] = i % 251
        write_png(image, str(path))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_ffhq(tmp_path / "ffhq")
    return tmp_path / "ffhq"


def make(root: Path, **kwargs) -> FFHQDataModule:
    kwargs = {"image_size": 16, "batch_size": 4, "num_workers": 0, "normalize": "none", **kwargs}
    dm = FFHQDataModule(root=str(root), **kwargs)
    dm.setup("predict")
    return dm


def test_batches_and_splits(root: Path):
    dm = make(root, val_fraction=0.2, seed=1)
    assert len(dm.splits["val"]) == 2 and len(dm.splits["train"]) == 8
    train_ids = {item["image_id"] for item in dm.splits["train"]}
    val_ids = {item["image_id"] for item in dm.splits["val"]}
    assert train_ids.isdisjoint(val_ids) and len(train_ids | val_ids) == len(INDICES)
    batches = list(dm.predict_dataloader())
    ids = [i for b in batches for i in b["image_id"]]
    assert ids == [f"{i:05d}" for i in INDICES]  # predict/test: every image, in index order
    batch = batches[0]
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["index"].tolist() == [0, 3, 7, 999]
    red = (batch["image"][:, 0].mean((1, 2)) * 255).round()
    assert red.tolist() == [i % 251 for i in (0, 3, 7, 999)]  # each image is its own file


def test_empty_image_is_refused_at_setup(root: Path):
    empty = root / fmt.image_relpath(1001)
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match=f"^{empty}: image file is empty \\(0 bytes\\)"):
        make(root)  # setup, before any batch


def test_cache_missing_tells_how_to_build(root: Path):
    with pytest.raises(DatasetNotFoundError) as info:
        make(root, cache_res=32)
    message = str(info.value)
    assert "make data DATASET=ffhq RES=32" in message
    assert str(root / "cache_32" / fmt.MANIFEST_FILE) in message


def test_reads_cache_built_by_prepare(root: Path, capsys):
    prepare(["ffhq", "--root", str(root), "--res", "24"])
    assert "10 images at 24 px" in capsys.readouterr().out
    dm = make(root, cache_res=24, image_size=24)
    paths = [path for _, path in dm.splits["test"].images]
    assert all(p.is_relative_to(root / "cache_24") for p in paths)
    item = dm.splits["test"][9]
    assert item["image_id"] == "69999" and item["image"].shape == (3, 24, 24)
    assert round(item["image"][0].mean().item() * 255) == 69999 % 251


def test_missing_root_says_where_to_get_ffhq(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError, match="github.com/NVlabs/ffhq-dataset"):
        make(tmp_path / "ffhq")


def test_synthetic_prepare_data(tmp_path: Path, monkeypatch):
    calls = []

    def fake_writer(out, preset, seed):
        calls.append((Path(out), preset, seed))
        write_ffhq(Path(out) / "ffhq", indices=[0, 1, 2])

    import datamodules.synthetic.faces as faces

    monkeypatch.setattr(faces, "write_synthetic_faces", fake_writer)
    dm = FFHQDataModule(root=str(tmp_path / "ffhq"), synthetic="small", num_workers=0)
    dm.prepare_data()
    dm.prepare_data()
    assert calls == [(tmp_path, "small", 0)]
    dm.setup("fit")
    assert len(dm.splits["test"]) == 3 and len(dm.splits["val"]) == 1


def test_reads_the_synthetic_twin(synthetic_faces_root: Path, tmp_path: Path):
    root = synthetic_faces_root / "ffhq"
    out = fmt.build_resized_cache(root, 32, out=tmp_path / "cache_32")
    images = fmt.list_ffhq_images(root)
    assert [i for i, _ in fmt.list_ffhq_images(out)] == [i for i, _ in images]
    dm = make(root, image_size=32)
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["image_id"] == [f"{i:05d}" for i, _ in images[:4]]


def test_celeba_framing_puts_the_image_where_ffhq_alignment_does():
    from datamodules.images import FFHQ_IN_CELEBA, celeba_framing

    top, left, side, _ = FFHQ_IN_CELEBA
    rows, cols = torch.meshgrid(torch.arange(312), torch.arange(312), indexing="ij")
    image = torch.stack([cols * 255 // 311, rows * 255 // 311, torch.full_like(rows, 7)])
    framed = celeba_framing(image.to(torch.uint8)).int()
    assert framed.shape == (3, 218, 178)
    inside = framed[:, top : top + side, left : left + side]
    expected = (torch.arange(side) * 2 + 0.5) * 255 / 311  # centre of the 2 source pixels
    assert (inside[0, side // 2] - expected).abs().max() <= 2  # red follows source columns
    assert (inside[1, :, side // 2] - expected).abs().max() <= 2  # green follows source rows
    assert torch.equal(
        framed[:, :top, left:-12], framed[:, top : top + 1, left:-12].expand(-1, top, -1)
    )
    assert torch.equal(
        framed[:, top:-25, :left], framed[:, top:-25, left : left + 1].expand(-1, -1, left)
    )
    assert (framed[2] == 7).all()


def test_celeba_framing_option(root: Path):
    dm = make(root, framing="celeba", image_size=16)
    assert dm.splits["test"][0]["image"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="framing"):
        FFHQDataModule(framing="celeb")
