"""LogFID through real Lightning runs: FID and KID against torchmetrics, and the real-set cache.

Most tests inject a tiny extractor (``Tiny``: 8-d features, records what it sees), as
torchmetrics takes ``feature=Module``: they are about the plumbing; the Inception itself is
checked against torchmetrics in ``test_inception.py``.
"""

from __future__ import annotations

import pytest
import torch
from inception_weights import noise_images, smooth_images
from lightning import LightningDataModule, LightningModule
from test_ddp_logging import Shards, assert_same_as_one_process
from test_image_quality_callback import loader, run
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from callbacks.fid import LogFID
from callbacks.generative.stats_file import RealStats, write_stats
from lightning_modules.components.inception import FIDInceptionV3

N = 12  # images per set; batches of 3, 1, 4, 4
BATCHES = [3, 1, 4, 4]


class Tiny(nn.Module):
    """8-d float64 features: a fixed projection of 4 x 4 average-pooled images; keeps every batch
    it sees. Float64, so torchmetrics' KID (in the features' dtype) rounds no more than ours."""

    num_features = 8

    def __init__(self, fingerprint: str = "tiny:0") -> None:
        super().__init__()
        self.fingerprint = fingerprint
        generator = torch.Generator().manual_seed(0)
        projection = torch.randn(48, 8, generator=generator, dtype=torch.float64) / 4
        self.register_buffer("projection", projection)
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.detach().clone())
        return F.adaptive_avg_pool2d(images.double(), 4).flatten(1) @ self.projection


class Generates(LightningModule):
    """Returns the batch's stored (fake, real) images as the step outputs."""

    evaluation_outputs = ("fake", "real")

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def validation_step(self, batch, batch_idx):
        fake, real = batch
        return {"fake": fake, "real": real}

    test_step = validation_step


def image_sets(n: int = N, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(fake, real): noise against smooth images, so FID is far from zero."""
    return noise_images(n, seed=1, size=size), smooth_images(n, seed=2, size=size)


def fid_run(tmp_path, stage="validate", data=None, **options):
    """Run ``stage`` with a fresh ``LogFID`` (Tiny extractor, cache in tmp_path / 'cache')."""
    options = {"extractor": Tiny(), "dataset": "tiny", "cache_dir": str(tmp_path / "cache")} | (
        options
    )
    callback = LogFID(**options)
    data = loader(*image_sets(), BATCHES) if data is None else data
    logged, caught = run(tmp_path, callback, stage, data, module=Generates)
    return callback, logged, caught


def seen_real(extractor: Tiny, real: torch.Tensor) -> int:
    """How many of ``real``'s images went through the extractor."""
    seen = torch.cat(extractor.seen) if extractor.seen else torch.zeros(0, *real.shape[1:])
    return sum(any(torch.equal(image, r) for r in real) for image in seen)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_fid_and_kid_equal_torchmetrics_with_the_same_extractor(tmp_path):
    fake, real = image_sets()
    _, logged, _ = fid_run(tmp_path, kid=True, kid_subsets=5, kid_subset_size=10, kid_seed=7)
    fid = FrechetInceptionDistance(feature=Tiny())
    kid = KernelInceptionDistance(feature=Tiny(), subsets=5, subset_size=10)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    torch.manual_seed(7)  # torchmetrics draws its KID subsets from the global generator
    kid_mean, kid_std = (float(v) for v in kid.compute())
    assert float(fid.compute()) > 1
    assert logged["val/fid"] == pytest.approx(float(fid.compute()), rel=1e-5)
    assert kid_std > 0
    assert logged["val/kid_mean"] == pytest.approx(kid_mean, rel=1e-5)
    assert logged["val/kid_std"] == pytest.approx(kid_std, rel=1e-5)


def test_cached_statistics_spare_the_real_images(tmp_path):
    fake, real = image_sets()
    first, logged, _ = fid_run(tmp_path)
    assert seen_real(first.extractor, real) == N
    assert len(list((tmp_path / "cache").glob("val-16x16-n12-*.pt"))) == 1
    # a new run reads the file: the extractor sees the generated images only
    second, again, _ = fid_run(tmp_path)
    assert seen_real(second.extractor, real) == 0 and len(torch.cat(second.extractor.seen)) == N
    assert again["val/fid"] == logged["val/fid"]
    # the same callback's next evaluation uses the statistics it holds, file or not
    for file in (tmp_path / "cache").glob("*.pt"):
        file.unlink()
    second.extractor.seen.clear()
    third, _ = run(tmp_path, second, "validate", loader(*image_sets(), BATCHES), Generates)
    assert seen_real(second.extractor, real) == 0
    assert third["val/fid"] == logged["val/fid"]


def smaller(n: int):
    return loader(*image_sets(n), [n])


@pytest.mark.parametrize(
    "change",
    [
        {"stage": "test"},  # split
        {"data": loader(*image_sets(N, size=20), BATCHES)},  # resolution
        {"data": smaller(N - 1)},  # count
        {"extractor": Tiny("tiny:1")},  # extractor
        {"dataset": "other"},
    ],
    ids=["split", "resolution", "count", "extractor", "dataset"],
)
def test_a_changed_key_recomputes(tmp_path, change):
    fid_run(tmp_path)
    callback, _, _ = fid_run(tmp_path, **change)
    (values,) = callback.last.values()
    # real images were extracted as well as the generated ones
    assert sum(len(x) for x in callback.extractor.seen) == 2 * values["fake_count"]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_a_damaged_or_foreign_file_is_recomputed_with_a_warning(tmp_path):
    _, logged, _ = fid_run(tmp_path)
    (path,) = (tmp_path / "cache").glob("*.pt")
    path.write_bytes(path.read_bytes()[:100])  # truncated
    callback, again, caught = fid_run(tmp_path)
    assert any(f"not using {path}: " in w and "recomputing" in w for w in caught)
    assert seen_real(callback.extractor, image_sets()[1]) == N
    assert again["val/fid"] == logged["val/fid"]
    # a readable file whose key is another's (renamed by hand) is refused by its key
    stats = RealStats(torch.zeros(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64), N)
    write_stats(path, {"dataset": "someone else's"}, stats)
    _, third, caught = fid_run(tmp_path)
    assert any("holds statistics of" in w for w in caught)
    assert third["val/fid"] == logged["val/fid"]


def test_an_epoch_that_sees_part_of_the_set_writes_no_file(tmp_path):
    fake, real = image_sets()
    data = DataLoader(torch.utils.data.TensorDataset(fake, real), batch_sampler=[[0, 1, 2, 3]])
    _, logged, caught = fid_run(tmp_path, data=data)
    assert any("4 real val images were evaluated, the dataset holds 12" in w for w in caught)
    assert "val/fid" in logged and not list((tmp_path / "cache").glob("*.pt"))


class Named(LightningDataModule):
    def __init__(self, size: int, batch_size: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()

    def val_dataloader(self):
        return loader(*image_sets(N, self.hparams.size), BATCHES)


def test_the_real_set_is_named_by_the_datamodule_or_explicitly(tmp_path):
    with pytest.raises(ValueError, match=r"name the real set .* with dataset=<name> \(no datamod"):
        fid_run(tmp_path, dataset=None)
    fid_run(tmp_path, dataset=None, data=Named(16))
    fid_run(tmp_path, dataset=None, data=Named(16, batch_size=3))  # loader settings: same set
    (file,) = (tmp_path / "cache").glob("*.pt")
    assert "test_fid_callback.Named" in torch.load(file, weights_only=True)["key"]


def test_bad_configurations_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="needs attributes num_features"):
        LogFID(extractor=nn.Identity())
    with pytest.raises(ValueError, match="not both"):
        LogFID(extractor=Tiny(), random_weights=True)
    with pytest.raises(ValueError, match="kid_subset_size 13 exceeds"):
        fid_run(tmp_path, kid=True, kid_subset_size=13)
    callback = LogFID(random_weights=True, resize="antialias")
    assert isinstance(callback.extractor, FIDInceptionV3)
    assert callback.extractor.fingerprint == "random:0/resize:antialias"


class SomeRanksMiss(LogFID):
    """Rank 1 does not find the cached statistics (as if the file appeared after it looked)."""

    def lookup(self, key):
        if torch.distributed.is_initialized() and torch.distributed.get_rank() == 1:
            return None
        return super().lookup(key)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_log_what_one_process_logs(tmp_path):
    """Two gloo processes with uneven shares (4 and 3 items, batches of 2) against one: computed,
    then read from the file the two processes wrote, then found by one rank only."""
    from test_ddp_logging import run as ddp_run

    fake, real = image_sets(7)
    data = Shards(list(zip(fake, real, strict=True)))
    folders = iter(["alone", "ranks"])

    def callbacks(cls=LogFID, folder=None):
        cache = tmp_path / (folder or next(folders))
        options = dict(kid=True, kid_subsets=3, kid_subset_size=5, kid_seed=1)
        return [cls(extractor=Tiny(), dataset="tiny", cache_dir=str(cache), **options)]

    alone = assert_same_as_one_process(
        tmp_path, Generates, data, "validate", callbacks, rel=1e-9
    )  # the sums are added in another order
    assert alone["val/fid"] > 1 and alone["val/kid_std"] > 0
    assert len(list((tmp_path / "ranks").glob("val-16x16-n7-*.pt"))) == 1
    for cls in (LogFID, SomeRanksMiss):
        ranks = ddp_run(tmp_path, 2, Generates(), data, "validate", callbacks(cls, "ranks"))
        assert ranks[0] == ranks[1] == pytest.approx(alone, rel=1e-9, abs=0.0)
