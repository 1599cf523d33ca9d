"""``make weights`` (experiments/weights.py): the table offline, downloads only when asked."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.request
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler

import pytest

from experiments import weights
from lightning_modules.components.pretrained import PretrainedFile

GOOD, BAD = b"good weights", b"tampered weights"


def entry(name: str, content: bytes, url: str = "https://example.org/x.pth") -> PretrainedFile:
    digest = hashlib.sha256(content).hexdigest()
    return PretrainedFile(name, f"{name}.pth", url, digest, (f"m/{name}",), "test file")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)  # what components/download.py calls


def test_the_table_offline_good_wrong_and_missing(tmp_path, capsys, no_network):
    good, wrong, missing = entry("good", GOOD), entry("wrong", GOOD), entry("absent", GOOD)
    (tmp_path / good.file).write_bytes(GOOD)
    (tmp_path / wrong.file).write_bytes(BAD)
    manifest = [good, wrong, missing]
    code = weights.main(["--weights-dir", str(tmp_path)], manifest)
    out = capsys.readouterr().out
    assert code == 1  # a wrong checksum is an error
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "verified" in rows["good"] and "12 B" in rows["good"] and "m/good" in rows["good"]
    assert "wrong checksum" in rows["wrong"] and str(tmp_path / "wrong.pth") in rows["wrong"]
    assert "missing" in rows["absent"]
    assert f"make weights DOWNLOAD=1 NAMES=absent WEIGHTS_DIR={tmp_path}" in out
    assert f"rm {tmp_path / 'wrong.pth'}" in out
    assert not (tmp_path / missing.file).exists()
    # missing files alone are reported, not an error
    assert weights.main(["--weights-dir", str(tmp_path), "good", "absent"], manifest) == 0
    assert weights.main(["--weights-dir", str(tmp_path), "nope"], manifest) == 2


def test_download_fails_fast_when_the_network_is_unreachable(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}/absent.pth"
    manifest = [entry("absent", GOOD, url), entry("other", GOOD, url)]
    start = time.monotonic()
    code = weights.main(["--weights-dir", str(tmp_path), "--download", "--timeout", "3"], manifest)
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1 and elapsed < 5
    assert f"cannot reach {url}" in err and "not trying the other 1 file(s)" in err
    assert "curl -L -o absent.pth" in err and str(tmp_path / "absent.pth") in err
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_download_verifies_then_renames(tmp_path, capsys):
    served = tmp_path / "served"
    served.mkdir()
    (served / "good.pth").write_bytes(GOOD)
    (served / "bad.pth").write_bytes(BAD)
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        good = entry("good", GOOD, f"{base}/good.pth")
        bad = entry("bad", GOOD, f"{base}/bad.pth")  # serves other bytes than the digest's
        target = tmp_path / "weights"
        code = weights.main(["--weights-dir", str(target), "--download"], [good, bad])
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert code == 1
    assert (target / "good.pth").read_bytes() == GOOD
    assert not (target / "bad.pth").exists() and not (target / "bad.pth.part").exists()
    assert "wrong checksum for 'bad'" in err
