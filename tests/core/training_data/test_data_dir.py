"""Data directory discovery, and downloads verified by checksum from a local HTTP server."""

import functools
import gzip
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nids_core.training_data.data_dir import (
    ChecksumMismatch,
    RemoteFile,
    content_sha256,
    download,
    find_data_dir,
)
from tests.support.deployment import iot23


def test_data_dir_order(tmp_path, monkeypatch):
    (tmp_path / "repo" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.delenv("NIDS_DATA_DIR", raising=False)
    assert find_data_dir(tmp_path / "repo") == tmp_path / "repo" / "data"
    shutil.rmtree(tmp_path / "repo" / "data")
    assert find_data_dir(tmp_path / "repo") == tmp_path / "shared" / "data"
    monkeypatch.setenv("NIDS_DATA_DIR", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    assert find_data_dir(tmp_path / "repo") == tmp_path / "elsewhere"


@pytest.fixture
def http_dir(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_download_verifies_content_checksum_plain_or_gzip(http_dir, tmp_path):
    served, url = http_dir
    src = iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz")
    expected = content_sha256(src.read_bytes())
    # The mirror serves it uncompressed; the content checksum still matches.
    (served / src.name).write_bytes(gzip.decompress(src.read_bytes()))
    (path,) = download([RemoteFile(src.name, "unused", expected)], tmp_path / "dl", base_url=url)
    assert content_sha256(path.read_bytes()) == expected
    assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_download_with_wrong_checksum_keeps_nothing(http_dir, tmp_path):
    served, url = http_dir
    (served / "x.csv.gz").write_bytes(gzip.compress(b"ts,uid\n1,C1\n"))
    with pytest.raises(ChecksumMismatch, match=r"x\.csv\.gz from http://127\.0\.0\.1"):
        download([RemoteFile("x.csv.gz", "unused", "0" * 64)], tmp_path / "dl", base_url=url)
    assert list((tmp_path / "dl" / "iot23").iterdir()) == []
