"""Downloads of a computed column's remote inputs: a download that failed is not tried again.

A computation starts every remote input downloading in its I/O pool before the row is computed;
when that download fails (over ``max_download_bytes``, past ``download_timeout_s``), reading the
input must raise the same error instead of downloading again, which would cost a deadline twice.
A web server on 127.0.0.1 in a thread counts the requests per path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_server import HostileHandler, HostileServer, serving

import pxlite as pxl
from pxlite.errors import ComputeError


class _Handler(HostileHandler):
    serve_s = 10.0

    def do_HEAD(self) -> None:  # counted too: any second contact with the server is a retry
        self.do_GET()

    def route(self, path: str) -> None:
        body = self.server.ok_png
        if path == "/ok.png":
            self._whole(body)
        elif path == "/endless":  # no length; stops long after any limit the tests set
            self.send_response(200)
            self.end_headers()
            for _ in range(1000):
                if not self._send(b"\0" * 65536):
                    break
            self.close_connection = True
        elif path == "/drip.png":  # a valid length, one byte every 50 ms
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


@pytest.fixture
def web(fresh_backends) -> Iterator[HostileServer]:
    with serving(_Handler) as server:
        yield server


def _table(web: HostileServer, tmp_path: Path) -> tuple[pxl.Connection, pxl.Table, list[str]]:
    db = pxl.connect(tmp_path / "d.pxl", config={
        "storage_retries": 0, "storage_timeout_s": 3, "max_download_bytes": 2_000_000,
        "download_timeout_s": 1.0})
    t = db.create_table("t", {"image": pxl.Image})
    urls = [web.url("/ok.png"), web.url("/endless"), web.url("/drip.png")]
    # Each failing URL twice: rows sharing an input share its one download and its error.
    t.insert([{"image": u} for u in (*urls, *urls[1:])])
    return db, t, urls


def test_a_failed_download_is_each_cell_error_after_one_request(web: HostileServer,
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


def test_a_failed_download_aborts_after_one_request(web: HostileServer, tmp_path: Path) -> None:
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
