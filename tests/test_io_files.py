"""pxl.io.import_files: a local folder or a bucket prefix becomes rows (SPEC 12).

Local folders and every cloud backend on its emulator; no downloads for cloud sources; re-runs
add only new files; an import killed midway resumes; every refusal leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pxlite as pxl
from pxlite import catalog, media, storage
from pxlite.errors import ComputeError, NotFoundError, SchemaError, StorageError
from pxlite.imagegen import write_images
from pxlite.io import files

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """3 JPEGs at the top, 2 PNGs in sub/, one text file."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    write_images(d, 3, size=(32, 24))
    write_images(d / "sub", 2, size=(32, 24), fmt="png")
    (d / "notes.txt").write_text("not an image")
    return d


def _keys(t: pxl.Table) -> list[str]:
    return sorted(r["key"] for r in t.select(t.key).collect())


def test_folder_becomes_a_table(db, folder):
    status = pxl.io.import_files("photos", folder, glob="**/*.jpg", db=db)
    assert status.num_rows == 3 and status.num_errors == 0
    t = db.get_table("photos")
    assert t.columns() == ["image", "key", "size", "mtime"]  # no etag for local files
    rows = t.select(t.image.fileurl, t.key, t.size, t.mtime).collect()
    for r in rows:
        path = folder / r["key"]
        assert r["image_fileurl"] == path.as_uri()
        assert r["size"] == path.stat().st_size
        assert abs(r["mtime"].timestamp() - path.stat().st_mtime) < 1e-3
    assert t.select(w=t.image.width).collect()["w"] == [32, 32, 32]  # the files, referenced


def test_glob_forms(db, folder):
    pxl.io.import_files("a", folder, glob="*.jpg", db=db)          # top level only
    assert _keys(db.get_table("a")) == [f"img_0000{i}.jpg" for i in range(3)]
    pxl.io.import_files("b", folder, glob="sub/*.png", db=db)      # listing starts at sub/
    assert _keys(db.get_table("b")) == ["sub/img_00000.png", "sub/img_00001.png"]
    pxl.io.import_files("c", folder, glob="**/img_0000[01].*", db=db)
    assert _keys(db.get_table("c")) == ["img_00000.jpg", "img_00001.jpg", "sub/img_00000.png",
                                        "sub/img_00001.png"]
    pxl.io.import_files("d", folder.as_uri(), glob="**/*.png", db=db)  # a file:// source
    assert len(_keys(db.get_table("d"))) == 2
    assert files.compile_glob("**")[0].match("x/y/z")  # type: ignore[union-attr]
    for bad in ("/abs/*.jpg", "", "[abc"):
        with pytest.raises(SchemaError, match="glob"):
            pxl.io.import_files("e", folder, glob=bad, db=db)
    assert "e" not in db.list_tables()


def test_rerun_adds_only_new_files(db, folder):
    pxl.io.import_files("photos", folder, glob="**/*.jpg", db=db)
    t = db.get_table("photos")
    again = pxl.io.import_files(t, folder, glob="**/*.jpg")
    assert again.num_rows == 0 and t.count() == 3
    write_images(folder / "new", 2, size=(16, 16))
    assert pxl.io.import_files("photos", folder, glob="**/*.jpg", db=db).num_rows == 2
    assert t.count() == 5 and len(set(_keys(t))) == 5
    # the "already there?" check goes through an index on the media column, not a scan
    meta = catalog.load_table(db.db, "photos")
    plan = db.db.query(f"EXPLAIN QUERY PLAN SELECT {meta.column('image').sql} FROM {meta.sql} "
                       f"WHERE {meta.column('image').sql} IN (SELECT value FROM json_each(?))",
                       ("[]",))
    assert any("USING COVERING INDEX" in r[-1] or "USING INDEX" in r[-1] for r in plan), plan


def test_bad_files_follow_on_error(db, folder):
    with pytest.raises(ComputeError, match=r"notes\.txt"):
        pxl.io.import_files("photos", folder, db=db)  # notes.txt is no image
    t = db.get_table("photos")  # the table was made; the failed batch left no row
    assert t.count() == 0
    status = pxl.io.import_files(t, folder, on_error="ignore")
    assert (status.num_rows, status.num_errors) == (6, 1)
    bad = t.where(t.image.errortype != None).select(t.key, t.image.errormsg).collect()  # noqa: E711
    assert bad["key"] == ["notes.txt"] and "not a valid image" in bad["image_errormsg"][0]
    # a re-run neither retries nor duplicates the failed file
    assert pxl.io.import_files(t, folder, on_error="ignore").num_rows == 0
    assert t.count() == 6


def test_refusals_leave_nothing_behind(db, tmp_path, folder):
    with pytest.raises(NotFoundError, match="no folder at"):
        pxl.io.import_files("x", tmp_path / "missing", db=db)
    with pytest.raises(SchemaError, match="is a file"):
        pxl.io.import_files("x", folder / "notes.txt", db=db)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no file under"):
        pxl.io.import_files("x", tmp_path / "empty", db=db)
    with pytest.raises(NotFoundError, match=r"6 file\(s\) under .*none matching glob"):
        pxl.io.import_files("x", folder, glob="**/*.gif", db=db)
    with pytest.raises(SchemaError, match="media_type must be a media type"):
        pxl.io.import_files("x", folder, media_type=pxl.Int, db=db)
    assert db.list_tables() == []
    t = db.create_table("t", {"label": pxl.String})
    with pytest.raises(NotFoundError, match="has no column 'image'"):
        pxl.io.import_files(t, folder)
    with pytest.raises(SchemaError, match="not a media input column"):
        pxl.io.import_files(t, folder, column="label")
    assert t.count() == 0


def test_unreadable_folder(db, folder, monkeypatch):
    """A folder the listing may not read (EACCES: injected, since root reads any folder) is
    a StorageError naming it, before anything is written."""
    real = os.scandir

    def refusing(path="."):
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(StorageError, match=r"cannot list .*photos.*Permission denied"):
        pxl.io.import_files("x", folder, db=db)
    assert db.list_tables() == []


def test_existing_table_with_computed_columns(db, folder):
    t = db.create_table("t", {"image": pxl.Image, "key": pxl.String, "note": pxl.String})
    t.add_computed_column(w=t.image.width)
    t.add_computed_column(small=t.image.resize((8, 6)))
    status = pxl.io.import_files(t, folder, glob="**/*.png")
    assert status.num_rows == 2
    rows = t.select(t.key, t.w, t.small).collect()
    assert rows["w"] == [32, 32] and all(im.size == (8, 6) for im in rows["small"])
    assert sorted(rows["key"]) == ["sub/img_00000.png", "sub/img_00001.png"]
    assert pxl.io.import_files(t, folder, glob="**/*.png").num_rows == 0
    t.drop_column("small")
    t.drop_column("w")
    t.drop_column("image")  # the import's index goes with the column
    assert t.columns() == ["key", "note"]


def test_many_files_commit_in_batches(db, tmp_path, monkeypatch):
    d = _png_folder(tmp_path / "many", 25)
    monkeypatch.setattr(files, "BATCH_ROWS", 4)
    commits = []
    real = files._commit

    def counting(*a, **k):
        out = real(*a, **k)
        commits.append(out[0])
        return out

    monkeypatch.setattr(files, "_commit", counting)
    assert pxl.io.import_files("many", d, db=db).num_rows == 25
    assert len(commits) == 7 and sum(commits) == 25


def _png_folder(d: Path, n: int) -> Path:
    """A new folder of ``n`` small PNG files named 000.png, 001.png, ..."""
    d.mkdir()
    data = _png_bytes()
    for i in range(n):
        (d / f"{i:03d}.png").write_bytes(data)
    return d


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, "PNG")
    return buf.getvalue()


_SLOW_IMPORT = textwrap.dedent("""
    import signal, sys
    import pxlite as pxl
    from pxlite.io import files
    # Ctrl-C as in a terminal: a child of a background job starts with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    files.BATCH_ROWS = 10
    real = files._commit
    def slow(*a, **k):
        out = real(*a, **k)
        print("committed", flush=True)
        sys.stdin.readline()  # the test says when to go on (or interrupts the import here)
        return out
    files._commit = slow
    db = pxl.connect(sys.argv[1])
    print(pxl.io.import_files("many", sys.argv[2], db=db), flush=True)
""")


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_interrupted_import_resumes(tmp_path, how):
    d = _png_folder(tmp_path / "many", 100)
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_IMPORT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen([sys.executable, str(script), str(tmp_path / "x.pxl"), str(d)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=env) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for k in range(3):  # three batches committed, the child held after the third
            assert proc.stdout.readline().strip() == "committed"
            if k < 2:
                proc.stdin.write("go on\n")
                proc.stdin.flush()
        proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode != 0
    with pxl.connect(tmp_path / "x.pxl") as db:
        t = db.get_table("many")
        done = t.count()
        assert done == 30  # the three whole batches committed, no part of the fourth
        status = pxl.io.import_files(t, d)
        assert status.num_rows == 100 - done
        assert t.count() == 100 and len(set(_keys(t))) == 100


# ---- buckets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage_target", ["local", "s3", "r2", "b2", "tigris", "gcs", "azure"],
                         indirect=True)
def test_bucket_prefix_becomes_rows_without_downloads(storage_target, tmp_path, monkeypatch):
    target = storage_target
    backend = storage.get_backend(target.prefix, target.settings)
    data = _png_bytes()
    keys = ["a/1.png", "a/2.png", "b/3.png", "b/readme.md"]
    for k in keys:
        backend.put_bytes(data if k.endswith(".png") else b"# hi", storage.join(target.prefix, k))
    fetched: list[str] = []
    real_fetch = media.fetch_local
    monkeypatch.setattr(media, "fetch_local", lambda u, *a, **k: (fetched.append(u),
                                                                  real_fetch(u, *a, **k))[1])
    with pxl.connect(tmp_path / "b.pxl", config=target.config) as db:
        status = pxl.io.import_files("objs", target.prefix, glob="**/*.png", db=db)
        assert status.num_rows == 3
        t = db.get_table("objs")
        cloud = target.name != "local"
        assert t.columns() == ["image", "key", "size", "mtime"] + (["etag"] if cloud else [])
        rows = t.select(t.image.fileurl, t.key, t.size).order_by(t.key).collect()
        assert rows["key"] == ["a/1.png", "a/2.png", "b/3.png"]
        assert rows["size"] == [len(data)] * 3
        if cloud:
            assert fetched == []  # nothing downloaded by the import
            assert all(e for e in t.select(t.etag).collect()["etag"])
            stored = db.db.query(f"SELECT c1 FROM {catalog.load_table(db.db, 'objs').sql}")
            assert {r[0] for r in stored} == {storage.join(target.prefix, k) for k in keys[:3]}
        # readable on demand, through the cache
        assert t.select(w=t.image.width).collect()["w"] == [4, 4, 4]
        # a re-run adds nothing; a new object is added alone
        assert pxl.io.import_files(t, target.prefix, glob="**/*.png").num_rows == 0
        backend.put_bytes(data, storage.join(target.prefix, "c/4.png"))
        assert pxl.io.import_files(t, target.prefix, glob="**/*.png").num_rows == 1
        assert t.count() == 4
        # an empty prefix and a glob matching nothing: errors, nothing made
        with pytest.raises(NotFoundError, match="no folder at" if not cloud else "no file under"):
            pxl.io.import_files("none", storage.join(target.prefix, "zzz/"), db=db)
        with pytest.raises(NotFoundError, match="none matching"):
            pxl.io.import_files("none", target.prefix, glob="*.gif", db=db)
        assert db.list_tables() == ["objs"]


@pytest.mark.parametrize("storage_target", ["s3", "gcs", "azure"], indirect=True)
def test_missing_bucket_is_an_error(storage_target, tmp_path):
    target = storage_target
    scheme = target.prefix.split("://", 1)[0]
    with pxl.connect(tmp_path / "b.pxl", config=target.config) as db:
        with pytest.raises(StorageError, match="pxl-nobucket"):
            pxl.io.import_files("x", f"{scheme}://pxl-nobucket-{os.getpid()}/p/", db=db)
        assert db.list_tables() == []


def test_progress_bar_counts_files(db, folder, monkeypatch):
    shown = []

    class Bar:
        def update(self, n):
            shown.append(n)

        def set_postfix(self, **kw):
            shown.append(kw)

        def close(self):
            shown.append("closed")

    monkeypatch.setattr(files, "progress_bar", lambda count, desc, settings, unit: (
        shown.append((count(), desc, unit)), Bar())[1])
    pxl.io.import_files("photos", folder, glob="**/*.jpg", db=db)
    assert shown[0] == (None, "photos: import_files", "file")
    assert shown[1:] == [3, {"added": 3, "refresh": False}, "closed"]


def test_progress_bar_of_unknown_total(monkeypatch):
    """The project's progress helper takes an unknown total (a streamed listing): it counts,
    on a terminal (tqdm) and in a notebook (its HTML bar: an indeterminate <progress>)."""
    from pxlite import config, progress

    monkeypatch.setattr(progress, "_where", lambda: "terminal")
    bar = progress.bar(lambda: None, "listing", config.resolve(), unit="file")
    assert bar is not None
    try:
        assert bar.total is None and bar.unit == "file"  # type: ignore[attr-defined]
        bar.update(5)
        bar.set_postfix(added=5, refresh=False)
        assert bar.n == 5  # type: ignore[attr-defined]
    finally:
        bar.close()


def test_readme_bucket_example_runs(moto_server, tmp_path, monkeypatch, capsys):
    """The README's bucket example, as written, against moto (its bucket name swapped)."""
    import re

    from fixtures_storage import create_s3_bucket, fresh_name, s3_config

    text = (REPO / "README.md").read_text(encoding="utf-8")
    (code,) = [b for b in re.findall(r"```py\n(.*?)```", text, re.S) if "s3://my-bucket" in b]
    bucket = fresh_name()
    create_s3_bucket(moto_server.endpoint, bucket, "eu-west-1")
    pxl.configure(s3=s3_config("s3", moto_server.endpoint))
    backend = storage.get_backend(f"s3://{bucket}/", pxl.settings())
    data = _png_bytes()
    for k in ("photos/a/1.jpg", "photos/b/2.jpg"):
        backend.put_bytes(data, f"s3://{bucket}/{k}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("my-bucket", bucket), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Inserted 2 rows with 0 errors")
    assert out[1].startswith("Inserted 0 rows with 0 errors")
    t = pxl.get_table("catalog")
    assert t.select(w=t.thumb.width).collect()["w"] == [4, 4]  # read from the bucket
    assert all(u.startswith(f"s3://{bucket}/thumbs/")
               for u in t.select(t.thumb.fileurl).collect()["thumb_fileurl"])


@pytest.mark.parametrize("storage_target", ["azure"], indirect=True)
def test_refused_listing_is_an_error(storage_target, tmp_path):
    """Credentials the service refuses (Azurite checks signatures): a clear StorageError from
    the first page of the listing, and no table."""
    import base64

    target = storage_target
    conn = target.config["azure"]["connection_string"]
    wrong = base64.b64encode(b"not the account key" * 3).decode()
    bad = ";".join(f"AccountKey={wrong}" if p.startswith("AccountKey=") else p
                   for p in conn.split(";"))
    config = {**target.config, "azure": {"connection_string": bad}}
    with pxl.connect(tmp_path / "b.pxl", config=config) as db:
        with pytest.raises(StorageError) as exc:
            pxl.io.import_files("x", target.prefix, db=db)
        assert "refused the request" in str(exc.value)
        assert wrong not in str(exc.value)
        assert db.list_tables() == []


def test_another_writer_between_check_and_commit(db, tmp_path, monkeypatch):
    """An import into a table it found empty skips the lookups while it is the only writer;
    when another connection imports the same files meanwhile (here: between a batch's check
    and its commit), the batch is done again with the lookup: no file twice."""
    d = _png_folder(tmp_path / "many", 12)
    monkeypatch.setattr(files, "BATCH_ROWS", 4)
    real_rows = files._rows
    calls = []

    def rows_then_race(p, new, cloud, on_error):
        calls.append(len(new))
        if len(calls) == 2:  # the second batch: another connection imports everything
            with pxl.connect(db.path) as other:
                assert pxl.io.import_files("many", d, db=other).num_rows == 8
        return real_rows(p, new, cloud, on_error)

    monkeypatch.setattr(files, "_rows", rows_then_race)
    status = pxl.io.import_files("many", d, db=db)
    t = db.get_table("many")
    assert t.count() == 12 and len(set(_keys(t))) == 12
    assert status.num_rows == 4  # its first batch; the rest the other connection added
    assert calls[:2] == [4, 4]  # the second batch was checked, then raced, then redone


def test_mtimes_are_stored_as_datetime_would_write_them():
    """import_files writes each file's mtime with a per-second cache (files listed together
    share their seconds): the text is datetime's own, to the microsecond and its half-even
    rounding, before and after 1970, on half-microsecond boundaries and across cache resets."""
    import datetime as dt
    import random

    from pxlite.io.files import utc_iso

    rnd = random.Random(3)
    values = [rnd.uniform(-2e9, 4e9) for _ in range(20_000)]
    values += [rnd.randint(-10**6, 2**31) + k / 2e6 for k in range(-3, 4) for _ in range(500)]
    values += [0.0, -5e-7, 0.9999995, 1.0000005, -1.5e-6, 1e-7, 1733500000.9999996]
    seconds: dict[int, str] = {}
    for v in values:
        want = dt.datetime.fromtimestamp(v, dt.UTC).isoformat(timespec="microseconds")
        assert utc_iso(v, seconds) == want, v
        assert utc_iso(v, seconds) == want, v  # from the cache
    assert len(seconds) <= 4097
