"""The FID Inception (components/inception.py) against torchmetrics' FrechetInceptionDistance."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch
from inception_weights import noise_images, smooth_images, write_calibrated_weights
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics.image.fid import FrechetInceptionDistance

from callbacks.generative.frechet import frechet_distance
from callbacks.generative.gaussian import FeatureGaussian
from lightning_modules.components import inception
from lightning_modules.components.download import NetworkError
from lightning_modules.components.inception import (
    INCEPTION_FILE,
    INCEPTION_URL,
    FIDInceptionV3,
    hub_cache_path,
)
from lightning_modules.components.pretrained import ChecksumError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, LAPACK's eigvals of 2048 x 2048 (inside
    torchmetrics' compute) with two threads waits on the other process's core for a minute."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    return str(write_calibrated_weights(tmp_path_factory.mktemp("inception")))


def fid_of(extractor: FIDInceptionV3, real: torch.Tensor, fake: torch.Tensor) -> float:
    gaussians = []
    for images in (real, fake):
        gaussian = FeatureGaussian(extractor.num_features)
        gaussian.update(extractor(images))
        gaussians.append(gaussian.compute())
    (mu1, s1, _), (mu2, s2, _) = gaussians
    return frechet_distance(mu1, s1, mu2, s2)


@pytest.mark.parametrize(
    "resize", ["tf1", pytest.param("antialias", marks=pytest.mark.slow)]
)  # each takes about 15 s on one core: 40 Inception passes at 299 px
def test_fid_equals_torchmetrics_on_the_same_weights(weights, resize):
    real, fake = smooth_images(10, seed=1, size=40), noise_images(10, seed=2, size=24)
    ours = fid_of(FIDInceptionV3(weights, resize=resize), real, fake)
    theirs = FrechetInceptionDistance(
        feature=2048,
        normalize=True,
        antialias=resize == "antialias",
        feature_extractor_weights_path=weights,
    )
    theirs.update(real, real=True)
    theirs.update(fake, real=False)
    expected = float(theirs.compute())
    assert expected > 10  # spread-out features: a real test of the whole chain
    assert ours == pytest.approx(expected, rel=1e-4)


def test_the_weights_constants_are_torch_fidelitys():
    assert INCEPTION_URL == URL_INCEPTION_V3
    assert INCEPTION_URL.endswith("/" + INCEPTION_FILE)


@pytest.fixture
def places(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Empty weights folder and hub cache; returns where each would hold the file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path / "weights"))
    hub = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    assert hub_cache_path() == hub
    return tmp_path / "weights" / INCEPTION_FILE, hub


def test_missing_weights_fail_at_once_naming_file_places_and_commands(places, tmp_path):
    folder, hub = places
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        FIDInceptionV3()
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert INCEPTION_FILE in message and str(folder) in message and str(hub) in message
    assert "make weights DOWNLOAD=1 NAMES=fid_inception" in message
    assert f"curl -L -o {folder} {INCEPTION_URL}" in message
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match=f"weights file not found: {missing}"):
        FIDInceptionV3(str(missing))
    with pytest.raises(ValueError, match="not both"):
        FIDInceptionV3(str(missing), random_weights=True)
    with pytest.raises(ValueError, match="resize must be one of"):
        FIDInceptionV3(random_weights=True, resize="nearest")


def test_a_copy_with_the_wrong_checksum_is_refused_wherever_it_is(weights, places):
    folder, hub = places
    for place in (hub, folder):  # the weights folder's copy is read first
        place.parent.mkdir(parents=True)
        shutil.copy(weights, place)
        with pytest.raises(ChecksumError, match=f"{place}: wrong checksum .*'fid_inception'"):
            FIDInceptionV3()
    with pytest.raises(ChecksumError, match="wrong checksum"):
        FIDInceptionV3("fid_inception")


def test_the_standard_places_weights_folder_then_hub_cache(weights, places, monkeypatch):
    unpinned = dataclasses.replace(inception.INCEPTION, sha256=None)  # the test file is not it
    monkeypatch.setattr(inception, "INCEPTION", unpinned)
    folder, hub = places
    hub.parent.mkdir(parents=True)
    shutil.copy(weights, hub)
    from_hub, given = FIDInceptionV3(), FIDInceptionV3(weights, resize="antialias")
    assert from_hub.fingerprint.startswith("sha256:") and from_hub.fingerprint.endswith("tf1")
    assert given.fingerprint == from_hub.fingerprint.replace("tf1", "antialias")
    for a, b in zip(from_hub.state_dict().values(), given.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    folder.parent.mkdir(parents=True)
    torch.save({k: v + 1 for k, v in torch.load(weights).items()}, folder)
    assert FIDInceptionV3().fingerprint != from_hub.fingerprint  # the folder's copy comes first


def test_download_only_when_asked_and_failing_fast(places, monkeypatch):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/{INCEPTION_FILE}"
    monkeypatch.setattr(inception, "INCEPTION", dataclasses.replace(inception.INCEPTION, url=url))
    start = time.monotonic()
    with pytest.raises(NetworkError, match="cannot reach"):
        FIDInceptionV3(download=True)
    assert time.monotonic() - start < 20
    assert not places[0].exists()


def test_float32_eval_mode_and_the_input_range():
    extractor = FIDInceptionV3(random_weights=True, seed=3)
    assert extractor.fingerprint == "random:3/resize:tf1"
    extractor.train()
    assert not extractor.training and not extractor.network.training
    assert not any(p.requires_grad for p in extractor.parameters())
    images = smooth_images(1, seed=4)
    # quantization as torchmetrics' normalize=True: (x * 255).byte(), truncating
    assert torch.equal(extractor.quantize(images), (images * 255).byte())
    edges = torch.full((1, 3, 8, 8), 1 + 0.5 / 255)
    edges[..., 0] = -0.5 / 255
    assert extractor.quantize(edges)[..., 0].eq(0).all() and extractor.quantize(edges).max() == 255
    plain = extractor(images)
    assert plain.dtype == torch.float32 and plain.shape == (1, 2048)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(extractor(images), plain)
    for bad in (images * 2 - 1, images.masked_fill(images > 0.5, float("nan"))):
        with pytest.raises(ValueError, match=r"needs images in \[0, 1\]"):
            extractor(bad)
    with pytest.raises(ValueError, match=r"float images \(B, 3, H, W\)"):
        extractor((images * 255).byte())
