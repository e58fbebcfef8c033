"""Concurrent use: several processes and threads on one database and one file cache.

* two processes inserting into one table at once (busy waits, no lost or duplicated rows);
* readers during a long add_computed_column in another process see the column absent or
  complete, never partly filled;
* many threads reading ``.localpath`` of the same and of different remote files (a counting
  HTTP server; S3 on moto): each file is downloaded exactly once;
* a table dropped while another process reads it: the reader's next operation is a clear
  NotFoundError naming the table; the database stays sound.
"""

from __future__ import annotations

import collections
import http.server
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog, storage
from pxlite.maintenance import check

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> list[Path]:
    from pxlite.imagegen import write_images

    return write_images(tmp_path_factory.mktemp("small"), 50, size=(32, 24))


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PXLITE_HOME": str(tmp_path / "child-home")}


def _wait_for(pred, timeout: float, what: str, procs: list[subprocess.Popen] = ()) -> None:
    t0 = time.monotonic()
    while not pred():
        for p in procs:
            if p.poll() is not None:
                out, err = p.communicate()
                raise AssertionError(f"a child exited ({p.returncode}) before {what}: "
                                     f"{out[-2000:]} {err[-3000:]}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


# ---- two writer processes -----------------------------------------------------------------------
INSERTER = textwrap.dedent("""
    import json, os, sys, time
    sys.path[:0] = [{root!r}]
    import pxlite as pxl
    a = json.loads(sys.argv[1])
    conn = pxl.connect(a["db"])
    t = conn.get_table("t")
    imgs, who = a["images"], a["who"]
    open(a["ready"], "w").close()
    while not os.path.exists(a["go"]):
        time.sleep(0.002)
    start = time.time()
    for call in range(a["calls"]):
        base = who * 100000 + call * a["rows"]
        t.insert([{{"image": imgs[(base + j) % len(imgs)], "k": base + j}}
                  for j in range(a["rows"])])
    print(json.dumps({{"start": start, "end": time.time()}}), flush=True)
""").format(root=str(ROOT))


def test_two_processes_insert_at_once(tmp_path, small_images):
    calls, rows = 20, 25
    db_path = tmp_path / "x.pxl"
    dest = tmp_path / "rot"
    conn = pxl.connect(db_path)
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.add_computed_column(rot=t.image.rotate(90), destination=str(dest))
    images = [str(p) for p in small_images]
    go = tmp_path / "go"
    procs = []
    for who in (1, 2):
        args = {"db": str(db_path), "images": images, "who": who, "calls": calls, "rows": rows,
                "go": str(go), "ready": str(tmp_path / f"ready{who}")}
        procs.append(subprocess.Popen([sys.executable, "-c", INSERTER, json.dumps(args)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=_env(tmp_path)))
    try:
        _wait_for(lambda: all((tmp_path / f"ready{w}").exists() for w in (1, 2)), 60,
                  "both writers are ready", procs)
        go.touch()
        spans = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            spans.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    # They really ran at the same time (each started before the other finished).
    assert spans[0]["start"] < spans[1]["end"] and spans[1]["start"] < spans[0]["end"], spans

    want = sorted(who * 100000 + i for who in (1, 2) for i in range(calls * rows))
    ks = [r["k"] for r in t.select(t.k).order_by(t.k).collect()]
    assert ks == want  # none lost, none twice
    assert t.count() == 2 * calls * rows
    assert t.where(t.rot.is_null()).count() == 0
    # Each process's calls are whole: every block of 25 rowids holds one call's rows.
    by_rowid = [r["k"] for r in t.select(t.k).collect()]
    blocks = [by_rowid[i:i + rows] for i in range(0, len(by_rowid), rows)]
    assert all(b == list(range(b[0], b[0] + rows)) for b in blocks)
    # Identical inputs give one content-addressed file, shared by the rows of both processes.
    rot = {r["u"] for r in t.select(u=t.rot.fileurl).collect()}
    assert len(rot) == len(images)
    assert {p.as_uri() for p in dest.rglob("*") if p.is_file()} == rot
    report = check(conn.places)
    assert report.ok, str(report)
    conn.close()


# ---- readers during a long computed-column run ---------------------------------------------------
SLOW_ADD = textwrap.dedent("""
    import json, sys, time
    sys.path[:0] = [{root!r}]
    import pxlite as pxl
    from pxlite import media
    a = json.loads(sys.argv[1])
    real = media.encode_image
    def slow(img, fmt=None):
        time.sleep(a["delay"])
        return real(img, fmt)
    media.encode_image = slow
    conn = pxl.connect(a["db"])
    t = conn.get_table("t")
    t.add_computed_column(rot=t.image.rotate(90), destination=a["dest"])
    print("done", flush=True)
""").format(root=str(ROOT))


def test_readers_see_a_computed_column_absent_or_complete(tmp_path, small_images):
    n = 300
    db_path = tmp_path / "x.pxl"
    dest = tmp_path / "rot"
    conn = pxl.connect(db_path)
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": str(small_images[i % len(small_images)]), "k": i} for i in range(n)])
    args = {"db": str(db_path), "dest": str(dest), "delay": 0.01}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_ADD, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path))
    during, after = 0, 0
    try:
        # Files under the destination: the child's transaction is under way.
        _wait_for(lambda: dest.exists() and any(f for _, _, f in os.walk(dest)), 60,
                  "the first output file", [proc])
        while True:
            running = proc.poll() is None
            cols = t.columns()
            if "rot" in cols:
                vals = t.select(t.k, u=t.rot.fileurl).collect()
                assert len(vals) == n
                assert all(v is not None for v in vals["u"]), "a partly filled column"
                if not running:
                    after += 1
            else:
                assert t.count() == n
                assert [r["k"] for r in t.select(t.k).collect()] == list(range(n))
                if running:
                    during += 1
            if not running:
                if "rot" in cols:
                    break
                # exited, but we read before its commit was visible: read once more
                assert proc.returncode == 0, proc.communicate()[1][-3000:]
            time.sleep(0.005)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert during >= 3, f"only {during} reads happened while the column was being computed"
    assert after >= 1
    assert len(t.select(t.rot).collect()) == n
    assert check(conn.places).ok
    conn.close()


# ---- many threads, one cache ---------------------------------------------------------------------
def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (i * 13 % 256, 80, 160)).save(buf, format="JPEG")
    return buf.getvalue()


class _Counting(http.server.BaseHTTPRequestHandler):
    """Serves /img/<i>.jpg slowly (a wide race window) and counts requests per path."""

    counts: ClassVar[collections.Counter] = collections.Counter()
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.counts[self.path] += 1
        time.sleep(0.1)
        i = int(self.path.rsplit("/", 1)[-1].split(".")[0])
        body = _jpeg(i)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        with self.lock:
            self.counts["HEAD " + self.path] += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(_jpeg(0))))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def counting_http():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.daemon_threads = True
    _Counting.counts = collections.Counter()
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Counting.counts
    server.shutdown()
    server.server_close()


N_FILES = 12
N_THREADS = 16


def _read_concurrently(db_path: Path, config: dict | None) -> list[dict]:
    """16 threads at once: half share one connection, half open their own. Each reads the
    local path of row 0 (the same file for all), then of every row (different files) starting
    at a different row. Returns what each thread saw."""
    shared = pxl.connect(db_path, config=config)
    barrier = threading.Barrier(N_THREADS)
    seen: list[dict] = [{} for _ in range(N_THREADS)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            conn = shared if i % 2 else pxl.connect(db_path, config=config)
            t = conn.get_table("t")
            barrier.wait(timeout=30)
            same = t.where(t.k == 0).select(p=t.image.localpath).collect()["p"]
            seen[i][0] = same[0]
            order = [(i + j) % N_FILES for j in range(N_FILES)]
            for k in order:
                seen[i][k] = t.where(t.k == k).select(p=t.image.localpath).collect()["p"][0]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    return seen


def _same_paths_and_bytes(seen: list[dict], want: dict[int, bytes]) -> None:
    for k, data in want.items():
        paths = {s[k] for s in seen}
        assert len(paths) == 1, f"row {k}: threads got different cache files {paths}"
        assert Path(paths.pop()).read_bytes() == data


def test_threads_read_remote_files_once_http(tmp_path, counting_http):
    base, counts = counting_http
    db_path = tmp_path / "x.pxl"
    conn = pxl.connect(db_path)
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": f"{base}/img/{k}.jpg", "k": k} for k in range(N_FILES)])
    assert not counts  # inserting a URL downloads nothing
    seen = _read_concurrently(db_path, None)
    assert {p: c for p, c in counts.items()} == {f"/img/{k}.jpg": 1 for k in range(N_FILES)}
    _same_paths_and_bytes(seen, {k: _jpeg(k) for k in range(N_FILES)})
    conn.close()


@pytest.mark.parametrize("storage_target", ["s3"], indirect=True)
def test_threads_read_remote_files_once_s3(tmp_path, storage_target, monkeypatch):
    from pxlite.storage.s3 import S3Backend

    target = storage_target
    backend = storage.get_backend(target.prefix, target.settings)
    uris = [f"{target.prefix}ref/{k}.jpg" for k in range(N_FILES)]
    for k, u in enumerate(uris):
        backend.put_bytes(_jpeg(k), u, "image/jpeg")
    db_path = tmp_path / "x.pxl"
    conn = pxl.connect(db_path, config=target.config)
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": u, "k": k} for k, u in enumerate(uris)])

    downloads: collections.Counter = collections.Counter()
    lock = threading.Lock()
    real = S3Backend.get_file

    def counting(self, uri, local_path):
        with lock:
            downloads[uri] += 1
        time.sleep(0.05)  # a wide race window
        return real(self, uri, local_path)

    monkeypatch.setattr(S3Backend, "get_file", counting)
    seen = _read_concurrently(db_path, target.config)
    assert dict(downloads) == {u: 1 for u in uris}
    _same_paths_and_bytes(seen, {k: _jpeg(k) for k in range(N_FILES)})
    conn.close()


# ---- a table dropped under a reader --------------------------------------------------------------
READER = textwrap.dedent("""
    import json, os, sys, time
    sys.path[:0] = [{root!r}]
    import pxlite as pxl
    from PIL import Image
    a = json.loads(sys.argv[1])
    conn = pxl.connect(a["db"])
    t = conn.get_table("t")
    reads, inflight = 0, []
    while not os.path.exists(a["dropped"]):
        try:
            n = t.count()
            sizes = [im.size for im in t.select(t.image).collect()["image"]]
            assert len(sizes) == n
            reads += 1
            if reads == 3:
                open(a["ready"], "w").close()
        except Exception as e:  # the drop raced with this read
            inflight.append(f"{{type(e).__module__}}.{{type(e).__name__}}: {{e}}")
            if reads < 3:
                raise
    img = Image.new("RGB", (4, 4), "red")
    ops = {{
        "count": lambda: t.count(),
        "collect": lambda: t.collect(),
        "select_where": lambda: t.select(t.k).where(t.k > 1).collect(),
        "insert": lambda: t.insert(image=img, k=9),
        "update": lambda: t.update({{"k": 5}}),
        "delete": lambda: t.delete(),
        "add_computed_column": lambda: t.add_computed_column(r=t.image.rotate(90)),
        "columns": lambda: t.columns(),
        "get_table": lambda: conn.get_table("t"),
    }}
    got = {{}}
    for name, fn in ops.items():
        try:
            fn()
            got[name] = None
        except Exception as e:
            got[name] = [[c.__name__ for c in type(e).__mro__], str(e)]
    print(json.dumps({{"reads": reads, "inflight": inflight, "got": got,
                      "repr": repr(t)}}), flush=True)
""").format(root=str(ROOT))


def test_table_dropped_while_another_process_reads_it(tmp_path):
    db_path = tmp_path / "x.pxl"
    conn = pxl.connect(db_path)
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": Image.new("RGB", (8, 8), c), "k": i}
              for i, c in enumerate(["red", "green", "blue", "white"])])
    t.add_computed_column(rot=t.image.rotate(90))
    keep = conn.create_table("keep", {"k": pxl.Int})
    keep.insert([{"k": 1}, {"k": 2}])
    args = {"db": str(db_path), "ready": str(tmp_path / "ready"),
            "dropped": str(tmp_path / "dropped")}
    proc = subprocess.Popen([sys.executable, "-c", READER, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path))
    try:
        _wait_for((tmp_path / "ready").exists, 60, "the reader's first reads", [proc])
        conn.drop_table("t")   # while the reader keeps reading
        assert conn.db.integrity_check() == []
        (tmp_path / "dropped").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["reads"] >= 3
    for name, got in r["got"].items():
        assert got is not None, f"{name} on a dropped table did not fail"
        mro, msg = got
        assert "NotFoundError" in mro, f"{name}: {mro[0]}: {msg}"
        assert "'t'" in msg, f"{name}: the message does not name the table: {msg}"
    assert "dropped" in r["repr"]
    # The database is sound, the other table untouched, nothing left behind.
    assert [x[0] for x in conn.db.query("PRAGMA integrity_check")] == ["ok"]
    assert [row["k"] for row in keep.collect()] == [1, 2]
    report = check(conn.places)
    assert report.ok, str(report)
    assert not any(f.is_file() for f in (tmp_path / "x.pxl.media").rglob("*"))
    conn.close()


def test_drop_table_after_another_connection_dropped_a_media_column(tmp_path, monkeypatch):
    """drop_table plans from the table as it is inside its transaction: a media column another
    connection dropped after this one loaded the table is not read (no raw SQL error), and the
    files of both columns still go."""
    db_path = tmp_path / "x.pxl"
    a = pxl.connect(db_path)
    other = pxl.connect(db_path)
    t = a.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert(image=Image.new("RGB", (4, 4), "red"), k=1)
    t.add_computed_column(rot=t.image.rotate(90))
    real, fired = catalog.load_table, []

    def load_then_drop_column(db, path):
        meta = real(db, path)
        if db is a.db and path == "t" and not fired:
            fired.append(True)
            other.get_table("t").drop_column("rot")
        return meta

    monkeypatch.setattr(catalog, "load_table", load_then_drop_column)
    a.drop_table("t")
    monkeypatch.undo()
    assert fired and a.list_tables() == []
    assert check(a.places).ok
    assert not any(f.is_file() for f in (tmp_path / "x.pxl.media").rglob("*"))


@pytest.mark.parametrize("recreate", [False, True], ids=["dropped", "dropped+recreated"])
@pytest.mark.parametrize("op", ["count", "collect", "insert", "drop_table", "move_media"])
def test_drop_between_planning_and_running_is_not_found(tmp_path, monkeypatch, recreate, op):
    """Deterministic version of the race a reader can hit: another connection drops the table
    (and creates another, which gets the freed id) after this operation loaded the table's
    metadata but before its SQL runs. The operation must fail with NotFoundError naming the
    table (a read may instead answer from a snapshot taken before the drop), and must never
    read or change the other table."""
    db_path = tmp_path / "x.pxl"
    a = pxl.connect(db_path)
    other = pxl.connect(db_path)  # another connection: what another process would be
    t = a.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert(image=Image.new("RGB", (4, 4), "red"), k=1)
    real, fired = catalog.load_table, []

    def load_then_drop(db, path):
        meta = real(db, path)
        if db is a.db and path == "t" and not fired:
            fired.append(True)
            other.drop_table("t")
            if recreate:
                u = other.create_table("u", {"image": pxl.Image, "k": pxl.Int})
                # ids are never reused (AUTOINCREMENT): the stale plan cannot reach table u
                assert catalog.load_table(other.db, "u").id != meta.id
                u.insert([{"image": Image.new("RGB", (4, 4), "blue"), "k": 7},
                          {"image": Image.new("RGB", (4, 4), "white"), "k": 8}])
        return meta

    monkeypatch.setattr(catalog, "load_table", load_then_drop)
    run = {"count": lambda: t.count(), "collect": lambda: [r["k"] for r in t.collect()],
           "insert": lambda: t.insert(image=Image.new("RGB", (4, 4), "green"), k=2),
           "drop_table": lambda: a.drop_table("t"),
           "move_media": lambda: t.move_media("image", str(tmp_path / "elsewhere"))}[op]
    # A read may also answer from its snapshot taken before the drop (the old rows), never
    # from the other table; a write must fail.
    before = {"count": 1, "collect": [1]}.get(op, "an error")
    try:
        try:
            got = run()
        except pxl.NotFoundError as e:
            assert "'t'" in str(e)
        else:
            assert got == before, f"{op} answered {got!r}, not NotFoundError or {before!r}"
    finally:
        monkeypatch.undo()
        assert fired
        if recreate:
            assert [r["k"] for r in other.get_table("u").select(other.get_table("u").k)
                    .collect()] == [7, 8], "the other table was changed"
        assert check(other.places).missing == []
        a.close()
        other.close()
