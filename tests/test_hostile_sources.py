"""Hostile sources: web servers that never stop, drip, lie about sizes or serve pixel bombs, and
images whose decoding would take all the memory of a machine with many cores.

Web files come from a ``ThreadingHTTPServer`` on 127.0.0.1 in the test process. Every handler is
bounded in time (``_SERVE_S``) and stops when the client goes away, so nothing outlives a test.
Shown:

* an endless body stops at ``max_download_bytes``; a body that drips one byte at a time and
  headers that drip stop at ``download_timeout_s`` (no per-read socket timeout catches them); a
  declared Content-Length over the limit is refused before the body is read; an image declaring
  more than ``max_image_pixels`` is refused from its first bytes. Each is a cell error naming the
  URL and the limit, and the cache's temp folder is left empty;
* decoding is bounded by ``decode_memory_mb``: two threads decoding two large PNGs (a few hundred
  KB each, 256 MB of pixels each) in a child process peak at about one image, not two;
* an image with EXIF orientation 6 (a portrait phone photo) is seen upright by computed columns,
  ``width``/``height`` and the notebook thumbnails.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_inputs import png_header_bomb, png_real_bomb
from web_server import HostileHandler, HostileServer, serving

import pxlite as pxl
from pxlite import config, media
from pxlite.errors import SchemaError, StorageError

#: What an "endless" body sends at most: far beyond every limit the tests set.
_ENDLESS_BYTES = 100 * 1024 * 1024


class _Handler(HostileHandler):
    def route(self, path: str) -> None:
        if path == "/ok.png":
            self._whole(self.server.ok_png)
        elif path == "/endless":  # no length, no end (in practice: _ENDLESS_BYTES, far more
            self.send_response(200)  # than any limit a test sets, so no disk fills up)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            block = b"\0" * 65536
            for _ in range(_ENDLESS_BYTES // len(block)):
                if not self._send(block):
                    break
            self.close_connection = True
        elif path == "/drip.png":  # a valid length, one byte every 50 ms
            body = self.server.ok_png
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                if not self._send(body[i:i + 1]):
                    break
                time.sleep(0.05)
        elif path == "/drip-headers":  # the status line, then headers one byte every 50 ms
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for b in b"X-Slow: " + b"a" * 10_000:
                if not self._send(bytes([b])):
                    break
                time.sleep(0.05)
        elif path == "/declared-huge":  # says 600 MB (and sends the first _ENDLESS_BYTES)
            self.send_response(200)
            self.send_header("Content-Length", str(600 * 1024 * 1024))
            self.end_headers()
            block = b"\0" * 65536
            for _ in range(_ENDLESS_BYTES // len(block)):
                if not self._send(block):
                    break
        elif path == "/short.png":  # declares more than it sends, then hangs up
            body = self.server.ok_png
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self._send(body)
            self.close_connection = True
        elif path.startswith("/bomb-"):  # a header declaring NxN pixels, then 50 MB of body
            side = int(path[len("/bomb-"):].split(".")[0])
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            self._send(png_header_bomb(side, side)[:-12])  # without IEND: more follows
            block = b"\0" * 65536
            for _ in range(50 * 16 - 1):
                if not self._send(block):
                    break
        else:
            self.send_error(404)


@pytest.fixture
def web(fresh_backends) -> Iterator[HostileServer]:
    with serving(_Handler) as server:
        yield server


def _settings(**values: object) -> config.Settings:
    base: dict[str, object] = {"storage_retries": 0, "storage_timeout_s": 3}
    return config.resolve({**base, **values})


def _temp_files(settings: config.Settings) -> list[str]:
    tmp = Path(settings.cache_dir) / ".tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def test_settings_are_declared_validated_and_shown() -> None:
    s = config.resolve()
    assert s["download_timeout_s"] == 600.0
    assert s["max_download_bytes"] == 4_000_000_000
    assert s["decode_memory_mb"] == 1024
    keys = {k for k, _, _ in s.describe()}
    assert {"download_timeout_s", "max_download_bytes", "decode_memory_mb"} <= keys
    for bad in ({"max_download_bytes": 0}, {"decode_memory_mb": "lots"},
                {"download_timeout_s": -1}):
        with pytest.raises(pxl.ConfigError, match=next(iter(bad))):
            config.resolve(bad)


def test_a_normal_download_still_works(web: HostileServer) -> None:
    s = _settings()
    path = media.fetch_local(web.url("/ok.png"), s)
    assert path.read_bytes() == web.ok_png
    assert _temp_files(s) == []


def test_endless_body_stops_at_max_download_bytes(web: HostileServer) -> None:
    s = _settings(max_download_bytes=3_000_000, download_timeout_s=60)
    url = web.url("/endless")
    t0 = time.monotonic()
    with pytest.raises(StorageError) as exc:
        media.fetch_local(url, s)
    assert time.monotonic() - t0 < 10
    msg = str(exc.value)
    assert url in msg and "max_download_bytes = 3,000,000" in msg, msg
    assert not exc.value.retryable
    assert _temp_files(s) == []


def test_declared_length_over_the_limit_is_refused_before_the_body(web: HostileServer) -> None:
    s = _settings(max_download_bytes=10_000_000)
    url = web.url("/declared-huge")
    with pytest.raises(StorageError, match="declares 629,145,600 bytes") as exc:
        media.fetch_local(url, s)
    assert url in str(exc.value) and "max_download_bytes" in str(exc.value)
    assert _temp_files(s) == []
    time.sleep(0.3)  # the handler notices the closed connection
    assert web.sent.get("/declared-huge", 0) < 20 * 1024 * 1024


def test_a_dripping_body_stops_at_the_deadline(web: HostileServer) -> None:
    # 50 ms per byte: every read returns well within storage_timeout_s, so only a deadline
    # over the whole transfer stops it
    s = _settings(download_timeout_s=1.5, storage_timeout_s=3)
    url = web.url("/drip.png")
    t0 = time.monotonic()
    with pytest.raises(StorageError) as exc:
        media.fetch_local(url, s)
    elapsed = time.monotonic() - t0
    assert elapsed < 4, f"took {elapsed:.1f} s"
    msg = str(exc.value)
    assert url in msg and "download_timeout_s = 1.5 s" in msg, msg
    assert _temp_files(s) == []


def test_dripping_headers_stop_at_the_deadline(web: HostileServer) -> None:
    s = _settings(download_timeout_s=1.5, storage_timeout_s=3)
    url = web.url("/drip-headers")
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="download_timeout_s") as exc:
        media.fetch_local(url, s)
    assert time.monotonic() - t0 < 4
    assert url in str(exc.value)
    assert _temp_files(s) == []


def test_the_deadline_covers_the_retries(web: HostileServer) -> None:
    # each try of a short body fails retryably; the retries (and their backoff waits, up to
    # 20 s each by then) stop at the deadline
    s = _settings(download_timeout_s=1.0, storage_retries=50, storage_retry_delay_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="download_timeout_s = 1 s"):
        media.fetch_local(web.url("/short.png"), s)
    assert time.monotonic() - t0 < 3


def test_a_body_shorter_than_declared_is_an_interrupted_download(web: HostileServer) -> None:
    s = _settings()
    with pytest.raises(StorageError, match="download interrupted") as exc:
        media.fetch_local(web.url("/short.png"), s)
    assert exc.value.retryable
    assert _temp_files(s) == []


@pytest.mark.parametrize(("side", "limit", "declared"), [
    (12_000, 100_000_000, "12000x12000 = 144,000,000 pixels"),
    # Pillow refuses to size this itself (over twice its own limit): still stopped at once
    (30_000, None, "more than 178,956,970 pixels"),
])
def test_image_pixel_limit_is_checked_on_the_first_bytes(web: HostileServer, side: int,
                                                         limit: int | None,
                                                         declared: str) -> None:
    s = _settings(**({"max_image_pixels": limit} if limit else {}))
    url = web.url(f"/bomb-{side}.png")
    with pytest.raises(SchemaError) as exc:
        media.fetch_local(url, s)
    msg = str(exc.value)
    assert url in msg and declared in msg and "max_image_pixels" in msg, msg
    assert _temp_files(s) == []
    time.sleep(0.3)
    # refused after the first chunk or two, not after the 50 MB body
    assert web.sent.get(f"/bomb-{side}.png", 0) < 10 * 1024 * 1024


def test_limits_are_cell_errors_naming_url_and_limit(web: HostileServer, tmp_path: Path) -> None:
    db = pxl.connect(tmp_path / "h.pxl", config={
        "storage_retries": 0, "storage_timeout_s": 3, "max_download_bytes": 2_000_000,
        "download_timeout_s": 1.5})
    try:
        t = db.create_table("t", {"image": pxl.Image})
        urls = [web.url("/ok.png"), web.url("/endless"), web.url("/drip.png")]
        t.insert([{"image": u} for u in urls])
        status = t.add_computed_column(w=t.image.width, on_error="ignore")
        assert status.num_errors == 2
        rows = {r["u"]: r for r in t.select(u=t.image.fileurl, w=t.w,
                                             msg=t.w.errormsg).collect()}
        assert rows[urls[0]]["w"] == 40 and rows[urls[0]]["msg"] is None
        endless, drip = rows[urls[1]]["msg"], rows[urls[2]]["msg"]
        assert urls[1] in endless and "max_download_bytes = 2,000,000" in endless, endless
        assert urls[2] in drip and "download_timeout_s = 1.5 s" in drip, drip
        assert _temp_files(db.settings()) == []
    finally:
        db.close()


# ---- decode memory -------------------------------------------------------------------------------
_DECODE_CHILD = textwrap.dedent("""
    import json, resource, sys, threading, time
    from pxlite import config, media

    paths, budget_mb = sys.argv[1:3], int(sys.argv[3])
    settings = config.resolve({"decode_memory_mb": budget_mb})

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    import PIL.Image  # noqa: F401  (imported before the baseline is taken)
    base = rss_mb()
    errors = []

    decoded = []

    def work(path):
        try:
            img = media.open_image(path, settings)
            decoded.append(img.getextrema())  # every pixel decoded and read
            time.sleep(0.5)  # hold the pixels, as a computed column does while it works
            del img
        except BaseException as e:  # reported, not swallowed
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(p,)) for p in paths]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps({"base": base, "peak": rss_mb(), "errors": errors, "decoded": decoded}))
""")


def _big_pngs(tmp_path: Path) -> list[str]:
    """Two 8000x8000 RGB PNGs: ~200 KB files, 256 MB of pixels each (Pillow keeps RGB as RGBX)."""
    paths = []
    for i in range(2):
        p = tmp_path / f"big{i}.png"
        p.write_bytes(png_real_bomb(8000, 8000))
        paths.append(str(p))
    assert all(os.path.getsize(p) < 1_000_000 for p in paths)
    return paths


def _decode_peak(tmp_path: Path, budget_mb: int) -> dict:
    paths = _big_pngs(tmp_path)
    out = subprocess.run([sys.executable, "-c", _DECODE_CHILD, *paths, str(budget_mb)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_decode_memory_is_bounded_across_threads(tmp_path: Path) -> None:
    """Two threads decoding two 8000x8000 PNGs (256 MB of pixels each) with a 300 MB budget:
    they take turns, so the peak is one image plus a margin, not two."""
    image_mb = 8000 * 8000 * 4 / 2**20
    r = _decode_peak(tmp_path, 300)
    assert r["errors"] == []
    assert r["decoded"] == [[[0, 0]] * 3] * 2  # both images were decoded in full
    grew = r["peak"] - r["base"]
    assert grew < 300 + 100, (
        f"decoding grew RSS by {grew:.0f} MB with decode_memory_mb=300 "
        f"(one image is {image_mb:.0f} MB)")


_COMPUTE_CHILD = textwrap.dedent("""
    import json, resource, sys
    import pxlite as pxl

    paths, db_path = sys.argv[1:3], sys.argv[3]
    db = pxl.connect(db_path, config={"decode_memory_mb": 300})
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": p} for p in paths])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = t.add_computed_column(r=t.image.rotate(90))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base": base, "peak": peak, "errors": status.num_errors}))
""")


def test_decode_memory_is_bounded_in_a_computed_column(tmp_path: Path) -> None:
    """The same through the executor (one compute thread per core): the second image waits
    for the first to be freed, so the peak is one image and its rotated copy, not two."""
    paths = _big_pngs(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _COMPUTE_CHILD, *paths, str(tmp_path / "c.pxl")],
        capture_output=True, text=True, timeout=300, check=True,
        env={**os.environ, "PXLITE_PROGRESS": "0"})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["errors"] == 0
    grew = r["peak"] - r["base"]
    # one 256 MB source, its 256 MB rotated copy and the encoder's buffers
    assert grew < 2 * 256 + 150, f"computing grew RSS by {grew:.0f} MB"


def test_decode_budget_never_deadlocks_on_held_images() -> None:
    """A charge whose image stays alive (held by the user, or by an error's traceback) stops
    holding others back when its thread moves on or ends."""
    budget = media._DecodeBudget()
    held: list[object] = []

    def hold() -> None:
        key = budget.acquire(100, 100)
        held.append(key)  # never released: its thread ends

    th = threading.Thread(target=hold)
    th.start()
    th.join()
    done = threading.Event()

    def other() -> None:
        budget.acquire(100, 100)
        done.set()

    th2 = threading.Thread(target=other)
    th2.start()
    assert done.wait(5), "a dead thread's charge blocked the budget"
    th2.join()
    assert budget.acquire(10, 100) is None  # the main thread is never charged


# ---- EXIF orientation ----------------------------------------------------------------------------
def _portrait_jpeg(path: Path) -> None:
    """A phone-style JPEG: stored 60x40 (landscape) with orientation 6, seen 40x60 upright.
    The stored left half is red, the right half blue; upright, red is on top."""
    from PIL import Image

    img = Image.new("RGB", (60, 40), (255, 0, 0))
    img.paste((0, 0, 255), (30, 0, 60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, format="JPEG", quality=95, exif=exif)


def _is_red(px: tuple) -> bool:
    return px[0] > 200 and px[2] < 60


def test_exif_orientation_is_applied(tmp_path: Path, db) -> None:
    src = tmp_path / "phone.jpg"
    _portrait_jpeg(src)
    s = db.settings()
    img = media.open_image(src, s)
    assert img.size == (40, 60)
    assert _is_red(img.getpixel((20, 5))) and not _is_red(img.getpixel((20, 55)))
    assert 0x0112 not in img.getexif()  # an output saved from it is not turned twice

    t = db.create_table("p", {"image": pxl.Image})
    t.insert(image=str(src))
    t.add_computed_column(w=t.image.width)
    t.add_computed_column(h=t.image.height)
    t.add_computed_column(flipped=t.image.transpose(pxl.FLIP_LEFT_RIGHT))
    row = t.select(t.w, t.h, t.flipped).collect()[0]
    assert (row["w"], row["h"]) == (40, 60)
    out = row["flipped"]
    assert out.size == (40, 60)
    assert _is_red(out.getpixel((20, 5))) and not _is_red(out.getpixel((20, 55)))
    # the notebook thumbnail is upright too
    import base64
    import re

    from PIL import Image

    html_text = t.select(t.image).collect()._repr_html_()
    b64 = re.search(r"base64,([A-Za-z0-9+/=]+)", html_text)
    assert b64 is not None
    thumb = Image.open(io.BytesIO(base64.b64decode(b64.group(1))))
    assert thumb.size == (40, 60)
