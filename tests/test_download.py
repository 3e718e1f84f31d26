"""Resumable, verified downloads (bioreg.data._io.download_url) against a real local HTTP server that
honours ``Range`` requests, ignores them, or answers 416 — the paths a real mirror takes."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from bioreg.data._io import download_url
from bioreg.data.errors import DataError

BODY = bytes(range(256)) * 40  # 10 240 bytes
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    honour_range = True
    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        rng = self.headers.get("Range")
        type(self).seen.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and self.honour_range else 0
        if rng and self.honour_range and start >= len(BODY):
            self.send_response(416)
            self.end_headers()
            return
        body = BODY[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server():
    _Handler.honour_range, _Handler.seen = True, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_fresh_download_is_verified_and_reports_progress(server, tmp_path):
    seen = []
    out = download_url(server, tmp_path / "f.bin", md5=MD5, progress=lambda d, t: seen.append((d, t)),
                       chunk_size=4096)
    assert out.read_bytes() == BODY and not (tmp_path / "f.bin.part").exists()
    assert seen[-1] == (len(BODY), len(BODY)) and len(seen) == 3 and _Handler.seen == [None]
    # verified: not fetched again
    assert download_url(server, out, md5=MD5) == out and _Handler.seen == [None]


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY[:3000])
    seen = []
    download_url(server, tmp_path / "f.bin", md5=MD5, progress=lambda d, t: seen.append((d, t)))
    assert (tmp_path / "f.bin").read_bytes() == BODY and _Handler.seen == ["bytes=3000-"]
    assert seen[-1] == (len(BODY), len(BODY))


def test_a_server_that_ignores_the_range_restarts_from_scratch(server, tmp_path):
    _Handler.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"x" * 3000)
    download_url(server, tmp_path / "f.bin", md5=MD5)
    assert (tmp_path / "f.bin").read_bytes() == BODY and _Handler.seen == ["bytes=3000-"]


def test_a_complete_part_file_gets_416_and_is_kept(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY)
    download_url(server, tmp_path / "f.bin", md5=MD5)
    assert (tmp_path / "f.bin").read_bytes() == BODY and _Handler.seen == [f"bytes={len(BODY)}-"]


def test_a_wrong_checksum_deletes_the_part_file(server, tmp_path):
    with pytest.raises(DataError, match=f"has MD5 {MD5}, expected {'0' * 32}; it was deleted"):
        download_url(server, tmp_path / "f.bin", md5="0" * 32)
    assert not (tmp_path / "f.bin.part").exists() and not (tmp_path / "f.bin").exists()


def test_a_network_failure_keeps_the_part_file(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY[:100])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    url = f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    srv.server_close()  # nothing listens there any more
    with pytest.raises(DataError, match="The partial file .*f.bin.part was kept; run the same command again"):
        download_url(url, tmp_path / "f.bin", md5=MD5, timeout=5)
    assert (tmp_path / "f.bin.part").read_bytes() == BODY[:100]
