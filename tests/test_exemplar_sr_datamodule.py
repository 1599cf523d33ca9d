"""CelebAExemplarDataModule on the tiny exemplar twin: the 5-image filter, exemplars never the
target, fixed evaluation and fresh training exemplars, m per batch, shapes and ranges, occlusion of
the sidecar regions only, attribute-chosen editing sets, the error messages."""

from __future__ import annotations

import shutil

import pytest
import torch

from datamodules.exemplar_sets import ExemplarCountSampler, downsample
from datamodules.exemplar_sr import CelebAExemplarDataModule
from datamodules.formats import celeba as celeba_format
from datamodules.formats.errors import DatasetNotFoundError, FormatError, SettingError
from datamodules.formats.exemplar_regions import REGION_NAMES, SIDECAR_FILE

EYEGLASSES = celeba_format.ATTRIBUTE_NAMES.index("Eyeglasses")


def _module(root, **kwargs) -> CelebAExemplarDataModule:
    options = {"batch_size": 4, "num_workers": 0} | kwargs
    module = CelebAExemplarDataModule(root=str(root), **options)
    module.setup("fit")
    return module


def _copy(root, tmp_path, skip=()):
    """A copy of the twin's tables (images linked) without the files in ``skip``."""
    copy = tmp_path / "celeba"
    copy.mkdir()
    (copy / celeba_format.IMAGE_DIR).symlink_to(root / celeba_format.IMAGE_DIR)
    for path in root.glob("*.*"):
        if path.name not in skip:
            shutil.copy(path, copy / path.name)
    return copy


def test_identities_with_fewer_than_5_images_are_dropped(exemplar_faces_root):
    module = _module(exemplar_faces_root)
    dropped = {s: c["dropped_identities"] for s, c in module.identity_counts.items()}
    assert dropped == {"train": 3, "val": 1, "test": 1}
    for split in ("train", "val", "test"):
        counts = module.splits[split].faces.identities.unique(return_counts=True)[1]
        assert counts.min() >= 5
    assert {s: len(d) for s, d in module.splits.items()} == {"train": 180, "val": 24, "test": 36}


@pytest.mark.parametrize("scale", [8, 16])
def test_batch_keys_shapes_and_ranges(exemplar_faces_root, scale):
    module = _module(exemplar_faces_root, scale=scale)
    batch = next(iter(module.train_dataloader()))
    side = 128 // scale
    assert batch["image_lr"].shape == (4, 3, side, side)
    assert batch["image_hr"].shape == (4, 3, 128, 128)
    assert batch["exemplars"].shape == (4, 3, 3, 128, 128)
    assert batch["exemplar_index"].shape == (4, 3) and len(batch["exemplar_ids"]) == 4
    assert all(len(names) == 3 for names in batch["exemplar_ids"])
    assert batch["attributes"].shape == (4, 40) and batch["identity"].shape == (4,)
    assert batch["exemplar_attributes"].shape == (4, 3, 40)
    assert batch["regions"].shape == (4, 5, 4) and batch["exemplar_regions"].shape == (4, 3, 5, 4)
    for key in ("image_lr", "image_hr", "exemplars"):
        assert batch[key].min() >= -1 and batch[key].max() <= 1
    expected = downsample((batch["image_hr"] + 1) / 2, side) * 2 - 1
    assert torch.allclose(batch["image_lr"], expected, atol=1e-5)


def test_exemplars_are_other_images_of_the_same_identity(exemplar_faces_root):
    module = _module(exemplar_faces_root)
    for split in ("train", "val", "test"):
        dataset = module.splits[split]
        for key in range(len(dataset)):
            item = dataset[key]
            picks = item["exemplar_index"]
            assert key not in picks.tolist() and item["image_id"] not in item["exemplar_ids"]
            assert len(set(picks.tolist())) == 3  # 5+ images: without replacement
            assert (dataset.faces.identities[picks] == item["identity"]).all()


def test_evaluation_exemplars_are_fixed_across_setups_and_epochs(exemplar_faces_root):
    def exemplar_sets(module, split):
        loader = module.val_dataloader() if split == "val" else module.test_dataloader()
        return torch.cat([batch["exemplar_index"] for batch in loader])

    first, second = _module(exemplar_faces_root), _module(exemplar_faces_root)
    for split in ("val", "test"):
        reference = exemplar_sets(first, split)
        assert torch.equal(reference, exemplar_sets(first, split))  # a second epoch
        assert torch.equal(reference, exemplar_sets(second, split))  # a second setup
    other_seed = _module(exemplar_faces_root, seed=1)
    assert not torch.equal(exemplar_sets(first, "val"), exemplar_sets(other_seed, "val"))


def test_training_exemplars_change_with_the_epoch(exemplar_faces_root):
    train = _module(exemplar_faces_root).splits["train"]
    epoch0 = torch.stack([train[(0, i, 3)]["exemplar_index"] for i in range(20)])
    epoch1 = torch.stack([train[(1, i, 3)]["exemplar_index"] for i in range(20)])
    assert torch.equal(epoch0, torch.stack([train[(0, i, 3)]["exemplar_index"] for i in range(20)]))
    assert not torch.equal(epoch0, epoch1)
    sampler = _module(exemplar_faces_root).train_dataloader().sampler
    sampler.set_epoch(3)
    assert {key[0] for key in sampler} == {3}


def test_uniform1to5_draws_one_m_per_batch(exemplar_faces_root):
    module = _module(exemplar_faces_root, train_m="uniform1to5", batch_size=8)
    sampler = module.train_dataloader().sampler
    keys = list(sampler)
    counts = [keys[i][2] for i in range(0, len(keys), 8)]
    assert all(k[2] == counts[i // 8] for i, k in enumerate(keys))
    assert set(counts) <= {1, 2, 3, 4, 5} and len(set(counts)) > 2
    shapes = {batch["exemplars"].shape[1] for batch in module.train_dataloader()}
    assert shapes == set(counts)
    ranks = [ExemplarCountSampler(range(40), 4, (1, 2, 3, 4, 5), 0, 2, r) for r in (0, 1)]
    per_rank = [[k[2] for k in s][::4] for s in ranks]
    assert per_rank[0] == per_rank[1]  # one m per step on every rank


def test_occlusion_touches_only_exemplar_regions_and_keeps_min_clean(exemplar_faces_root):
    assert REGION_NAMES[:2] == ("left_eye", "right_eye")
    clean = _module(exemplar_faces_root).splits["test"]
    for p, min_clean in ((1.0, 1), (1.0, 0), (0.5, 1)):
        occluded = _module(exemplar_faces_root, occlusion_p=p, min_clean=min_clean).splits["test"]
        for key in range(0, len(clean), 5):
            a, b = clean[key], occluded[key]
            assert torch.equal(a["image_hr"], b["image_hr"])  # targets never occluded
            assert torch.equal(a["exemplar_index"], b["exemplar_index"])
            hit = b["exemplar_occluded"]
            clean_per_region = (~hit).sum(0)
            if p == 1.0:
                assert (clean_per_region == min_clean).all()
            assert (clean_per_region >= min_clean).all()
            changed = (a["exemplars"] != b["exemplars"]).any(1)  # (m, H, W)
            inside = torch.zeros_like(changed)
            for e, r in hit.nonzero().tolist():
                top, left, height, width = b["exemplar_regions"][e, r].tolist()
                inside[e, top : top + height, left : left + width] = True
                assert changed[e, top : top + height, left : left + width].float().mean() > 0.9
            assert not (changed & ~inside).any()
            glasses = b["exemplar_attributes"][:, EYEGLASSES]
            eye_hit = hit[:, :2].any(1)  # left_eye, right_eye
            assert (glasses[eye_hit] == 1).all()
            assert torch.equal(glasses[~eye_hit], a["exemplar_attributes"][~eye_hit, EYEGLASSES])


def test_occlusion_without_the_sidecar_is_refused(exemplar_faces_root, tmp_path):
    root = _copy(exemplar_faces_root, tmp_path, skip=(SIDECAR_FILE,))
    with pytest.raises(
        SettingError, match=r"occlusion_p=0.5 .*exemplar_faces\.csv.*does not exist"
    ):
        _module(root, occlusion_p=0.5)
    item = _module(root).splits["val"][0]  # real-CelebA-like data: no region keys
    assert "regions" not in item and item["exemplars"].shape == (3, 3, 128, 128)


def test_missing_dataset_names_what_is_missing_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        _module(tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "mmlab.ie.cuhk.edu.hk" in message
    assert "DATASET=synthetic-exemplar-faces" in message


def test_bad_tables_name_file_and_line(exemplar_faces_root, tmp_path):
    root = _copy(exemplar_faces_root, tmp_path)
    identity_file = root / celeba_format.IDENTITY_FILE
    lines = identity_file.read_text().splitlines()
    lines[6] = "999999.jpg 1"  # names an image that the attribute table does not list
    identity_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"identity_CelebA\.txt:7: 999999\.jpg is not listed"):
        _module(root)


def test_malformed_sidecar_names_file_and_line(exemplar_faces_root, tmp_path):
    root = _copy(exemplar_faces_root, tmp_path)
    sidecar = root / SIDECAR_FILE
    lines = sidecar.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[4].split(",")
    fields[header.index("chin_top")] = "x"
    lines[4] = ",".join(fields)
    sidecar.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"exemplar_faces\.csv:5: chin_top 'x' is not an integer"):
        _module(root)
    sidecar.write_text("\n".join(lines[:4]) + "\n")  # rows of later images cut off
    with pytest.raises(FormatError, match=r"exemplar_faces\.csv: 000004\.jpg has no row"):
        _module(root)


def test_missing_image_names_the_listing_line(exemplar_faces_root, tmp_path):
    root = _copy(exemplar_faces_root, tmp_path)
    images = root / celeba_format.IMAGE_DIR
    images.unlink()
    shutil.copytree(exemplar_faces_root / celeba_format.IMAGE_DIR, images)
    (images / "000010.jpg").unlink()
    with pytest.raises(FormatError, match=r"list_attr_celeba\.txt:12: lists .*000010\.jpg"):
        _module(root)


def test_exemplars_by_attribute_come_from_another_identity(exemplar_faces_root):
    module = _module(exemplar_faces_root)
    dataset = module.splits["train"]
    male = celeba_format.ATTRIBUTE_NAMES.index("Male")
    target = dataset[0]
    wanted = not bool(target["attributes"][male])
    edit = module.exemplars_by_attribute("train", 0, "Male", wanted, 3, seed=0)
    assert edit["exemplars"].shape == (3, 3, 128, 128) and edit["identity"] != target["identity"]
    assert (dataset.faces.attributes[edit["exemplar_index"], male] == int(wanted)).all()
    again = module.exemplars_by_attribute("train", 0, "Male", wanted, 3, seed=0)
    assert torch.equal(edit["exemplar_index"], again["exemplar_index"])
    with pytest.raises(ValueError, match="unknown CelebA attribute"):
        module.exemplars_by_attribute("train", 0, "Glasses", True, 3)


def test_synthetic_option_writes_the_twin_once(tmp_path):
    root = tmp_path / "celeba"
    module = CelebAExemplarDataModule(root=str(root), synthetic="tiny", num_workers=0)
    module.prepare_data()
    stamp = (root / celeba_format.ATTR_FILE).stat().st_mtime_ns
    module.prepare_data()
    assert (root / celeba_format.ATTR_FILE).stat().st_mtime_ns == stamp
    module.setup("fit")
    assert len(module.splits["train"]) == 180


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="scale must be 8 or 16"):
        CelebAExemplarDataModule(scale=4)
    with pytest.raises(ValueError, match="occlusion_p"):
        CelebAExemplarDataModule(occlusion_p=1.5)
    with pytest.raises(ValueError, match="min_images >= 2"):
        CelebAExemplarDataModule(min_images=1)
    with pytest.raises(ValueError, match="inside the 128 px crop"):
        CelebAExemplarDataModule(window=(96, 32, 64))
    with pytest.raises(ValueError, match="not a multiple of the scale"):
        CelebAExemplarDataModule(window=(48, 32, 60))


def test_window_cuts_every_image_and_moves_the_region_boxes(exemplar_faces_root):
    whole = _module(exemplar_faces_root)
    cut = _module(exemplar_faces_root, window=(48, 32, 64))
    assert (cut.hr_size, cut.low_size) == (64, 8) and (whole.hr_size, whole.low_size) == (128, 16)
    item, full = cut.splits["test"][3], whole.splits["test"][3]
    assert torch.equal(item["image_hr"], full["image_hr"][:, 48:112, 32:96])
    assert torch.equal(item["exemplars"], full["exemplars"][..., 48:112, 32:96])
    torch.testing.assert_close(item["image_lr"], downsample((item["image_hr"] + 1) / 2, 8) * 2 - 1)
    assert torch.equal(item["regions"], full["regions"] - torch.tensor([48, 32, 0, 0]))
    # the moved boxes still frame the same pixels
    boxes = zip(item["regions"].tolist(), full["regions"].tolist(), strict=True)
    for (t, l, h, w), (ft, fl, _, _) in boxes:
        window_pixels = item["image_hr"][:, t : t + h, l : l + w]
        assert torch.equal(window_pixels, full["image_hr"][:, ft : ft + h, fl : fl + w])


def test_a_window_that_cuts_a_region_is_refused(exemplar_faces_root):
    with pytest.raises(ValueError, match=r"reaches outside the window .* = \(48, 32, 48\)"):
        _module(exemplar_faces_root, window=(48, 32, 48))


def test_no_exemplars_gives_empty_exemplar_sets(exemplar_faces_root):
    module = _module(exemplar_faces_root, num_exemplars=0, window=(48, 32, 64))
    batch = next(iter(module.train_dataloader()))
    assert batch["exemplars"].shape == (4, 0, 3, 64, 64)
    assert batch["exemplar_regions"].shape == (4, 0, 5, 4)
    assert batch["image_hr"].shape == (4, 3, 64, 64)
    with pytest.raises(ValueError, match="num_exemplars >= 0"):
        CelebAExemplarDataModule(num_exemplars=-1)
