"""End to end against the emulators: where files go (SPEC 4), inserting media (SPEC 2), reading
files back (SPEC 5), the cache (SPEC 7), and a database reopened in another process (SPEC 3).

Web images come from a ``ThreadingHTTPServer`` on 127.0.0.1 that counts GET requests per path, so
"downloaded once" is measured, not assumed.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_storage import create_s3_bucket, s3_config

import pxlite as pxl
from pxlite import media, storage
from pxlite.errors import ComputeError, PxliteError, StorageError
from pxlite.functions import net
from tools import servers

REPO = Path(__file__).resolve().parent.parent
CLOUD = ["s3", "r2", "b2", "tigris", "gcs", "azure"]
HTML_PAGE = b"<!doctype html><html><body>Sign in</body></html>"
KEY_RE = re.compile(r"^[0-9a-f]+/\d+/([0-9a-f]{2})/([0-9a-f]{64})\.(jpg|png)$")


# ---- a counting web server -----------------------------------------------------------------------

class WebServer:
    """Serves ``/img/<name>.jpg`` (a small JPEG, different per name, with an ETag),
    ``/nohead/<name>.jpg`` (the same, but HEAD is refused with 403 as S3/GCS presigned GET URLs
    do), ``/html/<name>`` (an HTML page with status 200) and 404 for anything else; counts GETs
    (and, separately, HEADs) per path."""

    def __init__(self) -> None:
        self.gets: Counter[str] = Counter()
        self.heads: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._bodies: dict[str, bytes] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.gets[self.path] += 1
                self._answer(head=False)

            def do_HEAD(self) -> None:
                with server._lock:
                    server.heads[self.path] += 1
                if self.path.startswith("/nohead/"):
                    self._send(403, "text/plain", b"signature does not match", head=True)
                else:
                    self._answer(head=True)

            def _answer(self, head: bool) -> None:
                if self.path.startswith(("/img/", "/nohead/")):
                    self._send(200, "image/jpeg", server.image_bytes(self.path), head=head)
                elif self.path.startswith("/html/"):
                    self._send(200, "text/html", HTML_PAGE, head=head)
                else:
                    self._send(404, "text/plain", b"not found", head=head)

            def _send(self, status: int, ctype: str, body: bytes, head: bool) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def image_bytes(self, path: str) -> bytes:
        with self._lock:
            if path not in self._bodies:
                from pxlite.imagegen import make_image

                buf = io.BytesIO()
                seed = int(hashlib.sha256(path.encode()).hexdigest()[:6], 16)
                make_image(seed, (48, 32)).save(buf, format="JPEG", quality=90)
                self._bodies[path] = buf.getvalue()
            return self._bodies[path]

    def url(self, kind: str = "img") -> str:
        """A fresh URL nobody has fetched yet."""
        name = uuid.uuid4().hex[:12]
        return (f"{self.base}/{kind}/{name}.jpg" if kind in ("img", "nohead")
                else f"{self.base}/{kind}/{name}")

    def count(self, url: str) -> int:
        with self._lock:
            return self.gets[url[len(self.base):]]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    server = WebServer()
    yield server
    server.close()


# ---- helpers -------------------------------------------------------------------------------------

def shown(prefix: str, settings) -> str:
    """How ``.fileurl`` shows files under a canonical prefix (Azure: the blob endpoint URL)."""
    return media.fileurl(prefix, settings)


def assert_under(fileurl: str, prefix: str, settings) -> None:
    """``fileurl`` is a content-addressed key directly under ``prefix``."""
    start = shown(prefix, settings)
    assert fileurl.startswith(start), f"{fileurl} is not under {start}"
    m = KEY_RE.match(fileurl[len(start):])
    assert m and m.group(2).startswith(m.group(1)), fileurl


def object_bytes(target, fileurl: str) -> bytes:
    """The bytes of the object ``.fileurl`` names, read through its backend (not the cache)."""
    backend = storage.get_backend(target.prefix, target.settings)
    by_url = {backend.fileurl(u): u for u in backend.list(target.prefix)}
    uri = by_url[fileurl]
    with backend.open(uri) as f:
        return f.read()


def one(t, *exprs, **named) -> dict:
    rows = t.select(*exprs, **named).collect()
    assert len(rows) == 1
    return rows[0]


# ---- SPEC 4: destination precedence ------------------------------------------------------------

@pytest.mark.parametrize("storage_target", ["local", "s3", "gcs", "azure"], indirect=True)
def test_destination_precedence(storage_target, tmp_path, jpegs):
    target = storage_target
    s = target.settings
    per_col = tmp_path / "per-column"
    img = jpegs[0]

    # 3. nothing configured: the database's own media folder, beside the file
    db = pxl.connect(tmp_path / "a.pxl", config=target.config)
    t = db.create_table("m", {"image": pxl.Image})
    t.insert(image=img)
    t.add_computed_column(default=t.image.rotate(90))
    t.add_computed_column(dest=t.image.rotate(180), destination=target.prefix)
    row = one(t, t.default.fileurl, t.dest.fileurl)
    assert_under(row["default_fileurl"], (tmp_path / "a.pxl.media").as_uri() + "/", s)
    assert_under(row["dest_fileurl"], target.prefix, s)  # 1. destination= beats the default

    # 2. output_media_dest through connect(config=...); destination= still wins
    db2 = pxl.connect(tmp_path / "b.pxl", config={**target.config,
                                                  "output_media_dest": target.prefix})
    t2 = db2.create_table("m", {"image": pxl.Image})
    t2.insert(image=img)
    t2.add_computed_column(out=t2.image.rotate(90))
    t2.add_computed_column(col=t2.image.rotate(90), destination=str(per_col))
    row = one(t2, t2.out.fileurl, t2.col.fileurl, t2.image.fileurl)
    assert_under(row["out_fileurl"], target.prefix, s)
    assert_under(row["col_fileurl"], per_col.as_uri() + "/", s)
    assert row["image_fileurl"] == img.as_uri()  # outputs only: the input stays a reference

    # 2. output_media_dest through pxl.configure(); connect(config=) beats configure()
    via_configure = target.prefix + "via-configure/"
    pxl.configure(**target.config, output_media_dest=via_configure)
    db3 = pxl.connect(tmp_path / "c.pxl")
    t3 = db3.create_table("m", {"image": pxl.Image})
    t3.insert(image=img)
    t3.add_computed_column(out=t3.image.rotate(90))
    t3.add_computed_column(col=t3.image.rotate(90), destination=str(per_col))
    row = one(t3, t3.out.fileurl, t3.col.fileurl)
    assert_under(row["out_fileurl"], via_configure, s)
    assert_under(row["col_fileurl"], per_col.as_uri() + "/", s)
    local_cfg = tmp_path / "from-config"
    db4 = pxl.connect(tmp_path / "d.pxl", config={"output_media_dest": str(local_cfg)})
    t4 = db4.create_table("m", {"image": pxl.Image})
    t4.insert(image=img)
    t4.add_computed_column(out=t4.image.rotate(90))
    assert_under(one(t4, t4.out.fileurl)["out_fileurl"], local_cfg.as_uri() + "/", s)

    # changing the setting affects new files only; existing references keep working
    pxl.configure(output_media_dest=None)
    t3.insert(image=jpegs[1])
    urls = [r["out_fileurl"] for r in t3.select(t3.out.fileurl).collect()]
    assert_under(urls[0], via_configure, s)
    assert_under(urls[1], (tmp_path / "c.pxl.media").as_uri() + "/", s)
    assert [im.size for im in (r["out"] for r in t3.select(t3.out).collect())] == [(64, 48)] * 2
    for d in (db, db2, db3, db4):
        d.close()


# ---- SPEC 2: inserting media with input_media_dest in the cloud ----------------------------------

@pytest.mark.parametrize("storage_target", ["s3", "gcs", "azure"], indirect=True)
def test_input_media_dest_persists_files_images_and_urls(storage_target, tmp_path, jpegs, web):
    from PIL import Image

    target = storage_target
    s = target.settings
    db = pxl.connect(tmp_path / "x.pxl", config={**target.config,
                                                 "input_media_dest": target.prefix})
    t = db.create_table("m", {"image": pxl.Image, "kind": pxl.String})
    urls = [web.url(), web.url()]
    pil = Image.new("RGB", (20, 10), (200, 30, 30))
    status = t.insert([{"image": jpegs[0], "kind": "file"}, {"image": pil, "kind": "pil"},
                       {"image": urls[0], "kind": "url"}, {"image": urls[1], "kind": "url"}])
    assert status.num_errors == 0
    assert [web.count(u) for u in urls] == [1, 1]  # each URL downloaded exactly once

    rows = t.order_by(t.kind).select(t.kind, t.image.fileurl, t.image.localpath).collect()
    for r in rows:
        assert_under(r["image_fileurl"], target.prefix, s)  # persisted, not referenced
        assert Path(r["image_localpath"]).is_file()
        assert Path(r["image_localpath"]).read_bytes() == object_bytes(target, r["image_fileurl"])
    by_kind: dict[str, list[bytes]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(Path(r["image_localpath"]).read_bytes())
    assert by_kind["file"] == [jpegs[0].read_bytes()]  # an exact copy of the file
    assert sorted(by_kind["url"]) == sorted(web.image_bytes(u[len(web.base):]) for u in urls)
    with Image.open(io.BytesIO(by_kind["pil"][0])) as im:
        assert im.size == (20, 10)
    images = [r["image"] for r in t.select(t.image).collect()]
    assert [im.size for im in images] == [(64, 48), (20, 10), (48, 32), (48, 32)]
    for im in images:
        im.load()
    assert [web.count(u) for u in urls] == [1, 1]  # reading never went back to the web server
    db.close()


@pytest.mark.parametrize("storage_target", ["s3"], indirect=True)
def test_persisted_url_download_also_feeds_the_cache(storage_target, tmp_path, web):
    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl", config={**target.config,
                                                 "input_media_dest": target.prefix})
    t = db.create_table("m", {"image": pxl.Image})
    url = web.url()
    t.insert(image=url)
    misses = pxl.cache_info().misses
    one(t, t.image.localpath)
    assert pxl.cache_info().misses == misses  # the persisted copy is already cached: no
    assert web.count(url) == 1                # upload->download round trip (SPEC 2)
    db.close()


# ---- SPEC 2/5: URLs without input_media_dest; bad URLs -------------------------------------------

def test_urls_are_references_fetched_once_on_first_use(tmp_path, web):
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("m", {"image": pxl.Image})
    urls = [web.url(), web.url()]
    t.insert([{"image": u} for u in urls])
    assert [web.count(u) for u in urls] == [0, 0]  # stored as given, not fetched yet
    rows = t.select(t.image.fileurl, t.image.localpath).collect()
    assert [r["image_fileurl"] for r in rows] == urls
    assert [web.count(u) for u in urls] == [1, 1]
    for u, r in zip(urls, rows, strict=True):
        assert Path(r["image_localpath"]).read_bytes() == web.image_bytes(u[len(web.base):])
    assert all(im.size == (48, 32) for im in (r["image"] for r in t.select(t.image).collect()))
    t.add_computed_column(rot=t.image.rotate(90))
    assert [web.count(u) for u in urls] == [1, 1]  # cache hits from here on
    db.close()


def test_url_refusing_head_is_read_with_one_get(tmp_path, web):
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("m", {"image": pxl.Image})
    url = web.url("nohead")
    t.insert(image=url)
    local = one(t, t.image.localpath)["image_localpath"]
    assert Path(local).read_bytes() == web.image_bytes(url[len(web.base):])
    assert web.count(url) == 1
    db.close()


def test_bad_urls_give_clear_errors(tmp_path, web):
    missing, html = web.url("missing"), web.url("html")
    # with input_media_dest the URL is fetched at insert: the whole insert fails, nothing written
    inbox = tmp_path / "inbox"
    db = pxl.connect(tmp_path / "x.pxl", config={"input_media_dest": str(inbox)})
    t = db.create_table("m", {"image": pxl.Image})
    for url, why in ((missing, "404"), (html, "HTML")):
        with pytest.raises(ComputeError, match=why) as exc:
            t.insert([{"image": web.url()}, {"image": url}])
        assert exc.value.row == 1 and exc.value.column == "image"
        assert t.count() == 0
        assert [p for p in inbox.rglob("*") if p.is_file()] == []  # the good row's upload undone
    with pytest.raises(ComputeError) as ei:
        t.insert(image=missing)
    assert missing in str(ei.value)
    status = t.insert([{"image": missing}, {"image": web.url()}], on_error="ignore")
    assert status.num_errors == 1
    errs = t.select(t.image.errortype, t.image.errormsg).collect()
    assert errs[0]["image_errortype"] == "ObjectNotFoundError"
    assert missing in errs[0]["image_errormsg"]
    assert errs[1]["image_errortype"] is None

    # without it the URL is a reference; reading it is the error, naming the URL
    db2 = pxl.connect(tmp_path / "y.pxl")
    t2 = db2.create_table("m", {"image": pxl.Image})
    t2.insert([{"image": missing}, {"image": html}])
    with pytest.raises(PxliteError, match=re.escape(missing)):
        t2.where(t2.image.fileurl == missing).select(t2.image.localpath).collect()
    with pytest.raises(PxliteError, match=re.escape(missing)):
        t2.select(t2.image).collect()[0]["image"]
    with pytest.raises(PxliteError):
        t2.select(t2.image).collect()[1]["image"]
    with pytest.raises(ComputeError, match=re.escape(missing)):  # the failing input is named
        t2.add_computed_column(rot=t2.image.rotate(90))
    assert "rot" not in t2.columns()
    db.close()
    db2.close()


def test_html_url_errors_name_the_url(tmp_path, web):
    html = web.url("html")
    db = pxl.connect(tmp_path / "x.pxl", config={"input_media_dest": str(tmp_path / "in")})
    t = db.create_table("m", {"image": pxl.Image})
    with pytest.raises(ComputeError) as exc:
        t.insert(image=html)
    msg_insert = str(exc.value)
    db2 = pxl.connect(tmp_path / "y.pxl")
    t2 = db2.create_table("m", {"image": pxl.Image})
    t2.insert(image=html)
    with pytest.raises(PxliteError) as exc2:
        t2.select(t2.image).collect()[0]["image"]
    assert html in msg_insert and html in str(exc2.value)


# ---- SPEC 5: fileurl forms and localpath ---------------------------------------------------------

@pytest.mark.parametrize("storage_target", ["local", *CLOUD], indirect=True)
def test_fileurl_forms_and_localpath(storage_target, tmp_path, jpegs, web):
    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl", config=target.config)
    t = db.create_table("m", {"image": pxl.Image, "n": pxl.Int})
    url = web.url()
    t.insert([{"image": jpegs[0], "n": 1}, {"image": url, "n": 2}])
    t.add_computed_column(rot=t.image.rotate(90), destination=target.prefix)
    rows = t.order_by(t.n).select(t.image.fileurl, t.image.localpath, t.rot.fileurl,
                                  t.rot.localpath).collect()
    # inputs: a local file stays where it is (file://); a URL is the original URL
    assert rows[0]["image_fileurl"] == jpegs[0].as_uri()
    assert rows[0]["image_localpath"] == str(jpegs[0])
    assert rows[1]["image_fileurl"] == url
    assert Path(rows[1]["image_localpath"]).read_bytes() == web.image_bytes(url[len(web.base):])
    expected_form = {"local": "file:///", "s3": "s3://", "r2": "r2://", "b2": "b2://",
                     "tigris": "tigris://", "gcs": "gs://"}
    for r in rows:
        fileurl = r["rot_fileurl"]
        if target.name == "azure":  # the blob's URL on the account endpoint (Azurite: http)
            endpoint = target.config["azure"]["connection_string"].split("BlobEndpoint=")[1]
            container = target.prefix[len("az://"):].split("/")[0]
            assert fileurl.startswith(f"{endpoint.rstrip(';').rstrip('/')}/{container}/pfx/")
        else:
            assert fileurl.startswith(expected_form[target.name])
        assert_under(fileurl, target.prefix, target.settings)
        local = Path(r["rot_localpath"])
        assert local.is_absolute() and local.is_file()
        assert local.read_bytes() == object_bytes(target, fileurl)
        if target.name == "local":
            assert fileurl == local.as_uri()  # a local destination is read in place
        else:
            assert local.is_relative_to(db.settings().cache_dir)
    db.close()


# ---- SPEC 7: the cache ------------------------------------------------------------------------

def test_prefetch_makes_the_table_usable_offline(tmp_path, jpegs):
    with servers.moto_server() as srv:  # a private server: this test stops it
        create_s3_bucket(srv.endpoint, "offline", "eu-west-1")
        cfg = {"s3": s3_config("s3", srv.endpoint), "storage_retries": 0,
               "storage_timeout_s": 5, "input_media_dest": "s3://offline/in/"}
        db = pxl.connect(tmp_path / "x.pxl", config=cfg)
        t = db.create_table("m", {"image": pxl.Image})
        t.insert([{"image": p} for p in jpegs[:3]])
        t.add_computed_column(rot=t.image.rotate(90), destination="s3://offline/out/")
        pxl.clear_cache()
        info = pxl.cache_info()
        assert info.count == 0 and info.size_bytes == 0
        assert t.prefetch() == 6
        info = pxl.cache_info()
        assert info.count == 6 and 0 < info.size_bytes <= info.limit_bytes
        misses, hits = info.misses, info.hits
        assert t.prefetch("image") == 3  # already there: hits, no downloads
        info = pxl.cache_info()
        assert (info.misses, info.hits) == (misses, hits + 3) and info.count == 6
    # the server is gone; every image of the table still reads
    rows = t.select(t.image, t.rot, t.image.localpath, t.rot.fileurl).collect()
    for r, p in zip(rows, jpegs[:3], strict=True):
        assert r["image"].size == (64, 48) and r["rot"].size == (64, 48)  # rotate keeps the size
        r["image"].load()
        r["rot"].load()
        assert Path(r["image_localpath"]).read_bytes() == p.read_bytes()
        assert r["rot_fileurl"].startswith("s3://offline/out/")
    assert pxl.cache_info().misses == misses
    # ... and that was the cache: without it the (stopped) server is needed
    pxl.clear_cache()
    with pytest.raises(StorageError):
        t.select(t.image.localpath).collect()
    db.close()


@pytest.mark.parametrize("storage_target", ["s3"], indirect=True)
def test_cache_stays_under_a_small_bound(storage_target, tmp_path):
    from PIL import Image

    limit = 500_000
    pxl.configure(file_cache_size_g=limit / 1e9)
    files = []
    for i in range(8):  # incompressible PNGs of ~120 KB: ~1 MB in all, twice the bound
        p = tmp_path / f"noise{i}.png"
        Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3)).save(p, compress_level=1)
        files.append(p)
    db = pxl.connect(tmp_path / "x.pxl", config={**storage_target.config,
                                                 "input_media_dest": storage_target.prefix})
    t = db.create_table("m", {"image": pxl.Image, "n": pxl.Int})
    t.insert([{"image": p, "n": i} for i, p in enumerate(files)])
    pxl.clear_cache()
    for i, p in enumerate(files):
        local = one(t.where(t.n == i), t.image.localpath)["image_localpath"]
        assert Path(local).read_bytes() == p.read_bytes()
        info = pxl.cache_info()
        assert info.limit_bytes == limit and info.size_bytes <= limit
    info = pxl.cache_info()
    assert 1 <= info.count < len(files)
    assert sum(1 for f in Path(info.directory).rglob("*.png")) == info.count  # files went too
    # every image still reads (evicted ones are fetched again)
    assert all(r["image"].size == (200, 200) for r in t.select(t.image).collect())
    assert pxl.cache_info().size_bytes <= limit
    db.close()


# ---- SPEC 3: reopening in another process -------------------------------------------------------

_CHILD = """
import json, sys
import pxlite as pxl  # pxlite.functions.net is not imported: the catalog names the function
cfg, path, images = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
db = pxl.connect(path, config=cfg)
t = db.get_table("m")
status = t.insert([{"image": p, "n": i} for i, p in enumerate(images, start=10)])
out = [dict(r) for r in t.where(t.n >= 10).order_by(t.n).select(
    t.n, t.rot.fileurl, *([t.share] if "share" in t.columns() else [])).collect()]
print(json.dumps({"errors": status.num_errors, "rows": out}))
"""


@pytest.mark.parametrize("storage_target", ["local", *CLOUD], indirect=True)
def test_reopen_in_a_subprocess_keeps_destinations(storage_target, tmp_path, jpegs):
    import urllib.request

    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl", config=target.config)
    t = db.create_table("m", {"image": pxl.Image, "n": pxl.Int})
    t.insert(image=jpegs[0], n=1)
    t.add_computed_column(rot=t.image.rotate(90), destination=target.prefix)
    cloud = target.name != "local"
    if cloud:
        t.add_computed_column(share=net.presigned_url(t.rot.fileurl, 600))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(target.config), str(tmp_path / "x.pxl"),
         json.dumps([str(p) for p in jpegs[1:3]])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0 and [r["n"] for r in result["rows"]] == [10, 11]
    # the parent sees the child's rows; their files landed in the same destination
    assert t.count() == 3
    rows = t.order_by(t.n).select(t.n, t.rot.fileurl, t.rot.localpath).collect()
    assert [r["rot_fileurl"] for r in rows[1:]] == [r["rot_fileurl"] for r in result["rows"]]
    for r in rows:
        assert_under(r["rot_fileurl"], target.prefix, target.settings)
        assert Path(r["rot_localpath"]).read_bytes() == object_bytes(target, r["rot_fileurl"])
    if cloud:  # the presigned column was computed in the child too (function found by name)
        for r in result["rows"]:
            with urllib.request.urlopen(r["share"], timeout=10) as resp:
                assert resp.read() == object_bytes(target, r["rot_fileurl"])
    db.close()
