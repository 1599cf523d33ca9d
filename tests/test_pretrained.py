"""The pretrained-file manifest and resolve_weights (components/pretrained.py), offline."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from lightning_modules.components import pretrained
from lightning_modules.components.backbones import create_backbone
from lightning_modules.components.pretrained import (
    MANIFEST,
    ChecksumError,
    PretrainedFile,
    file_sha256,
    manifest_entry,
    resolve_weights,
    resolve_weights_dir,
)

CONTENT = b"pretend weights\n"
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def fake_entry(name: str = "fake", sha256: str | None = DIGEST) -> PretrainedFile:
    return PretrainedFile(
        name, f"{name}-{DIGEST[:8]}.pth", f"https://example.org/{name}.pth", sha256, ("t",), "test"
    )


def test_manifest_entries_are_well_formed():
    names = [e.name for e in MANIFEST]
    files = [e.file for e in MANIFEST]
    assert len(set(names)) == len(names) and len(set(files)) == len(files)
    for entry in MANIFEST:
        assert re.fullmatch(r"[a-z0-9_]+", entry.name), entry.name
        assert entry.url.startswith("https://"), entry.url
        assert "/" not in entry.file and entry.needed_by and entry.description
        if entry.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{8,64}", entry.sha256), entry.name
            assert entry.digest_is_prefix == (len(entry.sha256) < 64)
        # torch.hub's convention: a hex part of the file name is the sha256's first digits
        tag = re.search(r"-([0-9a-f]{8,})\.pth?$", entry.file)
        if tag and entry.sha256 is not None:
            assert entry.sha256.startswith(tag.group(1)), entry.name
    for key in ("fid_inception", "vgg16", "alexnet", "resnet50", "seresnext101_32x4d"):
        assert manifest_entry(key).needed_by


def test_weights_dir_explicit_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.delenv("LATENTLAB_WEIGHTS", raising=False)
    assert resolve_weights_dir() == Path("weights")
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path / "env"))
    assert resolve_weights_dir() == tmp_path / "env"
    assert resolve_weights_dir(tmp_path / "x") == tmp_path / "x"
    assert manifest_entry("vgg16").path() == tmp_path / "env" / "vgg16-397923af.pth"


def test_a_key_resolves_to_its_verified_file(tmp_path):
    entry = fake_entry()
    (tmp_path / entry.file).write_bytes(CONTENT)
    assert resolve_weights("fake", tmp_path, [entry]) == tmp_path / entry.file
    prefix = fake_entry(sha256=DIGEST[:8])  # a published prefix is checked as a prefix
    assert resolve_weights("fake", tmp_path, [prefix]) == tmp_path / entry.file


def test_a_wrong_checksum_is_refused_by_name(tmp_path):
    entry = fake_entry()
    path = tmp_path / entry.file
    path.write_bytes(b"something else")
    actual = hashlib.sha256(b"something else").hexdigest()
    for request in ("fake", str(path)):  # by key, and by an explicit path to a manifest file
        with pytest.raises(ChecksumError, match=f"'fake'.*expected sha256 {DIGEST}, got {actual}"):
            resolve_weights(request, tmp_path, [entry])
    with pytest.raises(ChecksumError, match=f"rm {path}.*make weights DOWNLOAD=1 NAMES=fake"):
        resolve_weights("fake", tmp_path, [entry])
    with pytest.raises(ChecksumError, match="expected sha256 prefix 00000000"):
        resolve_weights("fake", tmp_path, [fake_entry(sha256="00000000")])


def test_a_missing_file_names_file_path_and_command(tmp_path):
    entry = fake_entry()
    expected = tmp_path / entry.file
    with pytest.raises(FileNotFoundError) as error:
        resolve_weights("fake", tmp_path, [entry])
    message = str(error.value)
    assert entry.file in message and str(expected) in message
    assert f"make weights DOWNLOAD=1 NAMES=fake WEIGHTS_DIR={tmp_path}" in message
    assert f"curl -L -o {expected} {entry.url}" in message
    with pytest.raises(FileNotFoundError, match="neither a file nor a manifest key"):
        resolve_weights("no_such_key", tmp_path, [entry])


def test_the_users_own_file_passes_as_is(tmp_path):
    own = tmp_path / "my-finetuned.pth"
    own.write_bytes(b"anything")
    assert resolve_weights(str(own), tmp_path, [fake_entry()]) == own


def test_digests_are_cached_per_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(CONTENT)
    assert file_sha256(path) == DIGEST
    assert (tmp_path / pretrained.CACHE_FILE).is_file()

    def refuse(*args):
        raise AssertionError("rehashed")

    monkeypatch.setattr(pretrained.hashlib, "sha256", refuse)
    assert file_sha256(path) == DIGEST  # from the cache
    monkeypatch.undo()
    path.write_bytes(b"changed content")  # another size: hashed again
    assert file_sha256(path) == hashlib.sha256(b"changed content").hexdigest()


def test_create_backbone_takes_a_manifest_key(tmp_path, monkeypatch):
    """``weights_file: <key>`` loads the file of the weights folder; a manifest file with the
    wrong bytes is refused by name."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = create_backbone("timm/mobilenetv1_100")
    entry = manifest_entry("mobilenetv1_100")
    save_file(source.state_dict(), str(tmp_path / entry.file))
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path))
    loaded = create_backbone("timm/mobilenetv1_100", weights_file="mobilenetv1_100")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    (tmp_path / "resnet50-19c8e357.pth").write_bytes(b"not resnet50")
    with pytest.raises(ChecksumError, match="'resnet50'.*expected sha256 prefix 19c8e357"):
        create_backbone("torchvision/resnet50", weights_file="resnet50")
