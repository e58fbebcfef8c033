"""Downloads of a computed column's remote inputs: a download that failed is not tried again.

A computation starts every remote input downloading in its I/O pool before the row is computed;
when that download fails (over ``max_download_bytes``, past ``download_timeout_s``), reading the
input must raise the same error instead of downloading again, which would cost a deadline twice.
A web server on 127.0.0.1 in a thread counts the requests per path.
"""

from __future__ import annotations

import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pxlite as pxl
from pxlite.errors import ComputeError

#: No handler serves longer than this, whatever the client does.
_SERVE_S = 10.0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, data: bytes) -> bool:
        """Write ``data``; False when the client went away or the server is stopping."""
        if self.server.stopping.is_set() or time.monotonic() > self.started + _SERVE_S:
            return False
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return True

    def do_HEAD(self) -> None:  # counted too: any second contact with the server is a retry
        self.do_GET()

    def do_GET(self) -> None:
        self.started = time.monotonic()
        with self.server.lock:
            self.server.requests[self.path] = self.server.requests.get(self.path, 0) + 1
        body = self.server.ok_png
        if self.path == "/ok.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._send(body)
        elif self.path == "/endless":  # no length; stops long after any limit the tests set
            self.send_response(200)
            self.end_headers()
            for _ in range(1000):
                if not self._send(b"\0" * 65536):
                    break
            self.close_connection = True
        elif self.path == "/drip.png":  # a valid length, one byte every 50 ms
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                if not self._send(body[i:i + 1]):
                    break
                time.sleep(0.05)
            self.close_connection = True
        else:
            self.send_error(404)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="PNG")
        self.ok_png = buf.getvalue()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def web(fresh_backends) -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _table(web: _Server, tmp_path: Path) -> tuple[pxl.Connection, pxl.Table, list[str]]:
    db = pxl.connect(tmp_path / "d.pxl", config={
        "storage_retries": 0, "storage_timeout_s": 3, "max_download_bytes": 2_000_000,
        "download_timeout_s": 1.0})
    t = db.create_table("t", {"image": pxl.Image})
    urls = [web.url("/ok.png"), web.url("/endless"), web.url("/drip.png")]
    # Each failing URL twice: rows sharing an input share its one download and its error.
    t.insert([{"image": u} for u in (*urls, *urls[1:])])
    return db, t, urls


def test_a_failed_download_is_each_cell_error_after_one_request(web: _Server,
                                                                tmp_path: Path) -> None:
    db, t, urls = _table(web, tmp_path)
    try:
        # Two columns read the image: neither downloads again.
        status = t.add_computed_column(w=t.image.width, on_error="ignore")
        status2 = t.add_computed_column(h=t.image.height, on_error="ignore")
        assert (status.num_errors, status2.num_errors) == (4, 4)
        rows = t.select(u=t.image.fileurl, w=t.w, msg=t.w.errormsg, hmsg=t.h.errormsg).collect()
        for r in rows:
            if r["u"] == urls[0]:
                assert r["w"] == 40 and r["msg"] is None
            elif r["u"] == urls[1]:
                assert urls[1] in r["msg"] and "max_download_bytes = 2,000,000" in r["msg"]
            else:
                assert urls[2] in r["msg"] and "download_timeout_s = 1 s" in r["msg"], r["msg"]
        # Once per column (each computation starts its own downloads; a failure is not cached),
        # never a second time for the row's own read.
        assert web.requests == {"/ok.png": 1, "/endless": 2, "/drip.png": 2}
    finally:
        db.close()


def test_a_failed_download_aborts_after_one_request(web: _Server, tmp_path: Path) -> None:
    db, t, urls = _table(web, tmp_path)
    try:
        with pytest.raises(ComputeError) as ei:
            t.add_computed_column(w=t.image.width, on_error="abort")
        msg = str(ei.value)
        assert urls[1] in msg and "max_download_bytes = 2,000,000" in msg, msg
        assert web.requests == {"/ok.png": 1, "/endless": 1, "/drip.png": 1}
        assert "w" not in t.columns()
    finally:
        db.close()
