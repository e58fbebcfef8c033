"""check() and move_media(): the catalog against the stored files, both ways, on real files and
real storage servers (moto, the GCS emulator, Azurite)."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog, storage, writes
from pxlite.errors import ConfigError, NotFoundError, SchemaError, StorageError
from pxlite.maintenance import CheckReport, check

COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]
CLOUD = ["s3", "gcs", "azure"]


# ---- helpers -----------------------------------------------------------------------------------
def _img(color: str) -> Image.Image:
    return Image.new("RGB", (8, 8), color)


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _raw(db, path: str, column: str) -> list:
    """The stored values of a column, by rowid (what rows name: files in the database's own
    media folder are stored relative to it and given here as absolute URIs)."""
    meta = catalog.load_table(db.db, path)
    col = meta.column(column)
    return [r[0] if r[0] is None else db.resolve(r[0])
            for r in db.db.query(f"SELECT {col.sql} FROM {meta.sql} ORDER BY _rowid")]


def _listing(settings, prefix: str) -> set[str]:
    return set(storage.get_backend(prefix, settings).list(prefix))


def _user_file(tmp_path: Path, src: Path, name: str = "mine.jpg") -> Path:
    dest = tmp_path / "user" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def _sizes(t, column: str = "image") -> list:
    images = t.select(getattr(t, column)).collect()[column]
    return [None if im is None else im.size for im in images]


@pytest.fixture
def media_table(tmp_path, jpegs):
    """A local database: 3 pxlite-written images, a user's original (a reference), a web URL,
    and a computed column stored in its own folder."""
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int, "link": pxl.Image})
    user = _user_file(tmp_path, jpegs[0])
    t.insert([{"image": _img(c), "k": i} for i, c in enumerate(COLORS[:3])]
             + [{"image": user, "k": 3}])
    t.insert(link="https://example.com/never-fetched.png", k=4)   # never downloaded
    t.add_computed_column(small=t.image.resize((4, 4)), destination=str(tmp_path / "rot"))
    yield db, t, user
    db.close()


# ---- check() -----------------------------------------------------------------------------------
def test_clean_database_is_ok(media_table):
    db, _, _ = media_table
    report = check(db.places)
    assert isinstance(report, CheckReport)
    assert report.ok, str(report)
    assert not report.missing and not report.orphans and not report.integrity and not report.errors
    assert report.unchecked == 1  # the web URL is never probed
    text = str(report)
    assert "OK" in text and "missing files: 0" in text and "orphan files: 0" in text
    assert pxl.check(db=db).ok


def test_missing_files_are_reported_and_never_fixed(media_table, tmp_path):
    db, _, user = media_table
    images = _raw(db, "t", "image")
    written = storage.file_path(images[1])
    written.unlink()              # a file pxlite wrote
    user.unlink()                 # a user's original that vanished
    report = check(db.places)
    assert not report.ok
    got = {(m.table, m.column, m.rowid, m.uri, m.owned) for m in report.missing}
    assert got == {("t", "image", 2, images[1], True), ("t", "image", 4, images[3], False)}
    assert "missing files: 2" in str(report) and images[1] in str(report)
    fixed = check(db.places, fix=True)
    assert fixed.fixed == [] and len(fixed.missing) == 2
    assert _raw(db, "t", "image") == images  # rows are never touched


def _key(data: bytes, ext: str) -> str:
    """``<xx>/<sha256>.<ext>``: the content-addressed shape pxlite writes (and only that is
    ever taken for an orphan)."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest}.{ext}"


def test_orphans_are_removed_and_nothing_else(media_table, tmp_path):
    db, t, user = media_table
    meta = catalog.load_table(db.db, "t")
    media = tmp_path / "x.pxl.media"
    junk = media / meta.uid / "1" / _key(b"junk", "jpg")
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"junk")
    dropped_col = tmp_path / "rot" / meta.uid / "99" / _key(b"junk2", "png")
    dropped_col.parent.mkdir(parents=True)
    dropped_col.write_bytes(b"junk2")
    odd = media / meta.uid / "1" / "zz" / "junk.jpg"  # under the prefix, not pxlite's shape
    odd.parent.mkdir(parents=True)
    odd.write_bytes(b"not ours")
    notes = media / "notes.txt"   # in a media folder but not under the table's prefix: not ours
    notes.write_text("keep me")
    keep = (_files(media) | _files(tmp_path / "rot") | {user}) - {junk, dropped_col}
    assert odd in keep

    report = check(db.places)
    assert not report.ok
    assert sorted(report.orphans) == sorted([junk.as_uri(), dropped_col.as_uri()])
    assert "orphan files: 2" in str(report) and "--fix" in str(report)

    fixed = check(db.places, fix=True)
    assert sorted(fixed.fixed) == sorted(report.orphans) and fixed.ok
    assert not junk.exists() and not dropped_col.exists()
    assert all(p.exists() for p in keep) and notes.read_text() == "keep me"
    assert _sizes(t)[:4] == [(8, 8)] * 3 + [Image.open(user).size]
    assert check(db.places).ok


def test_fix_sweeps_a_dropped_table_whose_sweep_was_interrupted(tmp_path, monkeypatch):
    db = pxl.connect(tmp_path / "x.pxl")
    keep = db.create_table("keep", {"image": pxl.Image})
    keep.insert([{"image": _img(c)} for c in COLORS[:2]])
    gone = db.create_table("gone", {"image": pxl.Image})
    gone.insert([{"image": _img(c)} for c in COLORS[2:5]])
    gone.add_computed_column(rot=gone.image.rotate(45), destination=str(tmp_path / "rot"))
    uid = catalog.load_table(db.db, "gone").uid
    monkeypatch.setattr(writes, "sweep_dropped", lambda *a, **k: None)
    monkeypatch.setattr(writes, "finish_deletes", lambda *a, **k: None)
    db.drop_table("gone")
    monkeypatch.undo()
    leftovers = {p for p in _files(tmp_path / "x.pxl.media") | _files(tmp_path / "rot")
                 if uid in p.parts}
    assert len(leftovers) == 6
    report = check(db.places)
    assert sorted(report.orphans) == sorted(p.as_uri() for p in leftovers)
    fixed = check(db.places, fix=True)
    assert fixed.ok and len(fixed.fixed) == 6 and len(fixed.swept_locations) == 2
    assert not any(p.exists() for p in leftovers)
    assert not db.db.query("SELECT 1 FROM px_media_locations WHERE table_uid = ?", (uid,))
    assert not catalog.pending_deletes(db.db)
    assert _sizes(keep) == [(8, 8), (8, 8)]
    assert check(db.places).ok
    db.close()


def _ended_by_a_crash(op) -> None:
    """An operation's end as a crash leaves it: no waiting delete finished, and its writer
    row as good as gone (a dead process's row is ignored)."""
    with op.db.transaction():
        catalog.remove_writers(op.db, [op.writer])


def _crash_before_deletes(tmp_path, monkeypatch):
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": _img(c), "k": i} for i, c in enumerate(COLORS[:4])])
    uris = _raw(db, "t", "image")
    monkeypatch.setattr(writes, "finish_deletes", lambda *a, **k: None)  # "crash"
    t.delete(where=t.k >= 2)
    monkeypatch.undo()
    assert sorted(map(db.resolve, catalog.pending_deletes(db.db))) == sorted(uris[2:])
    return db, t, uris


def test_fix_finishes_pending_deletes_left_by_a_crash(tmp_path, monkeypatch):
    db, t, uris = _crash_before_deletes(tmp_path, monkeypatch)
    report = check(db.places)
    assert sorted(report.orphans) == sorted(uris[2:]) and len(report.pending) == 2
    # Same content named again (a row of a table no operation writes: plain SQL here).
    other = db.create_table("other", {"image": pxl.Image})
    meta = catalog.load_table(db.db, "other")
    with db.db.transaction():
        db.db.execute(f"INSERT INTO {meta.sql}(c1) VALUES (?)", (db.stored(uris[3]),))
    fixed = check(db.places, fix=True)
    assert fixed.fixed == [uris[2]] and fixed.pending_cleared == 2
    assert not storage.file_path(uris[2]).exists()
    assert storage.file_path(uris[3]).exists()
    assert not catalog.pending_deletes(db.db)
    assert check(db.places).ok and _sizes(t) == [(8, 8)] * 2 and other.count() == 1
    db.close()


def test_the_next_writer_of_the_table_finishes_pending_deletes(tmp_path, monkeypatch):
    """Deletes a crash left pending in a table's key space are finished when the next
    operation writing that table ends; a file its rows name again is kept."""
    db, t, uris = _crash_before_deletes(tmp_path, monkeypatch)
    t.insert(image=_img(COLORS[3]), k=9)  # the same content as row 3: its file again
    assert not catalog.pending_deletes(db.db)
    assert not storage.file_path(uris[2]).exists() and storage.file_path(uris[3]).exists()
    assert check(db.places).ok and _sizes(t) == [(8, 8)] * 3
    db.close()


def test_a_failing_location_is_reported_not_fatal(media_table, tmp_path, monkeypatch):
    db, _, _ = media_table
    from pxlite.storage.local import LocalBackend

    meta = catalog.load_table(db.db, "t")
    junk = tmp_path / "x.pxl.media" / meta.uid / "1" / _key(b"junk", "jpg")
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"junk")
    rot_prefix = storage.to_uri(tmp_path / "rot") + "/"
    real_list = LocalBackend.list

    def broken(self, prefix):
        if prefix.startswith(rot_prefix):
            raise StorageError(f"injected: cannot list {prefix}", uri=prefix)
        return real_list(self, prefix)

    monkeypatch.setattr(LocalBackend, "list", broken)
    report = check(db.places, fix=True)
    assert not report.ok and len(report.errors) == 1 and "injected" in report.errors[0]
    assert report.fixed == [junk.as_uri()] and not junk.exists()   # the rest still ran
    assert not report.missing  # files under the failing location are not called missing
    assert all(p.exists() for p in _files(tmp_path / "rot"))


def test_file_written_after_the_listing_is_not_missing_after_probing_a_pending_delete(
        media_table, tmp_path, monkeypatch):
    """check() confirms each owned file absent from its listing before calling it missing (it
    may have been written, and its row committed, after the listing). That confirmation must
    still work once a pending delete has been probed: check() once named the probe loop's
    variable ``exists``, which shadowed the probe function, so the confirmation called a bool
    and reported the late file missing."""
    import apsw

    from pxlite.storage.local import LocalBackend

    db, t, _ = media_table
    meta = catalog.load_table(db.db, "t")
    # A pending delete under a location whose listing fails: check() must probe it directly.
    rot_prefix = storage.to_uri(tmp_path / "rot") + "/"
    leftover = tmp_path / "rot" / meta.uid / "9" / _key(b"leftover", "jpg")
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"leftover")
    raw = apsw.Connection(str(tmp_path / "x.pxl"))
    raw.execute("INSERT INTO px_pending_deletes(uri) VALUES (?)", (leftover.as_uri(),))
    raw.close()
    # A file pxlite wrote (its row committed) that the listing of its location does not show.
    late = t.select(t.image.fileurl).collect()[0]["image_fileurl"]
    assert late.startswith((tmp_path / "x.pxl.media").as_uri()) and Path(
        storage.file_path(late)).is_file()
    real_list = LocalBackend.list

    def listing(self, prefix):
        if prefix.startswith(rot_prefix):
            raise StorageError(f"injected: cannot list {prefix}", uri=prefix)
        return (u for u in real_list(self, prefix) if u != late)

    monkeypatch.setattr(LocalBackend, "list", listing)
    report = check(db.places)
    assert leftover.as_uri() in report.orphans  # the pending delete was probed: it exists
    assert len(report.errors) == 1 and "injected" in report.errors[0]
    assert report.missing == [], str(report)


def test_cli_check_exit_status(media_table, tmp_path, capsys):
    from pxlite.cli import main

    db, _, _ = media_table
    meta = catalog.load_table(db.db, "t")
    junk = tmp_path / "x.pxl.media" / meta.uid / "1" / _key(b"junk", "jpg")
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"junk")
    path = str(tmp_path / "x.pxl")
    with pytest.raises(SystemExit) as e:
        main(["check", "--db", path])
    assert e.value.code == 1 and "orphan files: 1" in capsys.readouterr().out
    assert main(["check", "--db", path, "--fix"]) == 0 and not junk.exists()
    assert main(["check", "--db", path]) == 0


@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_check_on_cloud_storage(storage_target, tmp_path):
    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl", config=target.config)
    backend = storage.get_backend(target.prefix, target.settings)
    ref = target.prefix + "user/ref.png"        # a bucket object the user inserted: a reference
    buf = io.BytesIO()
    _img("white").save(buf, format="PNG")
    backend.put_bytes(buf.getvalue(), ref)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": _img(c)} for c in COLORS[:3]] + [{"image": ref}])
    t.add_computed_column(rot=t.image.rotate(90), destination=target.prefix)
    assert check(db.places).ok
    meta = catalog.load_table(db.db, "t")
    rot = _raw(db, "t", "rot")
    junk = f"{target.prefix}{meta.uid}/{meta.column('rot').col_id}/{_key(b'junk', 'jpg')}"
    backend.put_bytes(b"junk", junk)
    backend.delete(rot[0])
    backend.delete(ref)
    report = check(db.places)
    assert report.orphans == [junk]
    assert {(m.column, m.rowid, m.uri, m.owned) for m in report.missing} == {
        ("rot", 1, rot[0], True), ("image", 4, ref, False)}
    fixed = check(db.places, fix=True)
    assert fixed.fixed == [junk] and not backend.exists(junk)
    assert all(backend.exists(u) for u in rot[1:3])
    assert _raw(db, "t", "rot") == rot
    db.close()


# ---- move_media() ------------------------------------------------------------------------------
@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_move_media_local_to_cloud_and_back(storage_target, tmp_path, jpegs):
    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl", config=target.config)
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    user = _user_file(tmp_path, jpegs[0])
    t.insert([{"image": _img(c), "k": i} for i, c in enumerate(COLORS[:4])]
             + [{"image": user, "k": 4}])
    t.add_computed_column(rot=t.image.rotate(90))
    meta = catalog.load_table(db.db, "t")
    before = _raw(db, "t", "image")
    media = tmp_path / "x.pxl.media"
    rot_before = _raw(db, "t", "rot")

    st = t.move_media("image", target.prefix)
    assert str(st).startswith("Moved 4 files with 0 errors")
    assert st.num_skipped == 1
    after = _raw(db, "t", "image")
    assert after[4] == before[4] == user.as_uri()                   # the user's file: untouched
    for old, new in zip(before[:4], after[:4], strict=True):
        assert new.startswith(target.prefix) and new.endswith(old.split(f"{meta.uid}/", 1)[1])
    assert _sizes(t) == [(8, 8)] * 4 + [Image.open(user).size]
    assert not _files(media / meta.uid / "1")                       # old copies gone
    assert user.exists() and _raw(db, "t", "rot") == rot_before
    assert len(_listing(target.settings, f"{target.prefix}{meta.uid}/1/")) == 4
    assert not catalog.pending_deletes(db.db)
    assert check(db.places).ok

    back = tmp_path / "back"
    st = t.move_media("image", str(back))
    assert st.num_rows == 4 and st.num_errors == 0
    assert all(u.startswith(back.as_uri()) for u in _raw(db, "t", "image")[:4])
    assert _sizes(t) == [(8, 8)] * 4 + [Image.open(user).size]
    assert not _listing(target.settings, f"{target.prefix}{meta.uid}/")
    assert check(db.places).ok

    # A computed column: its files move and its destination follows, so new rows go there too.
    st = t.move_media("rot", target.prefix)
    assert st.num_rows >= 1
    assert catalog.load_table(db.db, "t").column("rot").destination == target.prefix
    t.insert(image=_img("black"), k=5)
    rot = _raw(db, "t", "rot")
    assert all(u.startswith(target.prefix) for u in rot)
    assert _sizes(t, "rot")[-1] == (8, 8)
    assert not _files(media / meta.uid / str(meta.column("rot").col_id))
    assert check(db.places).ok
    db.close()


@pytest.mark.parametrize("storage_target", ["s3"], indirect=True)
def test_failed_copy_leaves_the_table_unchanged(storage_target, tmp_path, monkeypatch):
    from pxlite.storage.s3 import S3Backend

    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl", config=target.config)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": _img(c)} for c in COLORS])
    meta = catalog.load_table(db.db, "t")
    before = _raw(db, "t", "image")
    files_before = _files(tmp_path / "x.pxl.media")

    # A destination that cannot work fails before anything is copied.
    with pytest.raises(ConfigError):
        t.move_media("image", target.prefix.replace(target.prefix.split("/")[2], "no-such-bkt"))

    calls, lock, real_put = [0], threading.Lock(), S3Backend.put_file

    def flaky(self, local_path, uri, content_type=None):
        with lock:
            calls[0] += 1
            n = calls[0]
        if n == 3:
            raise StorageError(f"injected upload failure for {uri}", uri=uri)
        return real_put(self, local_path, uri, content_type)

    monkeypatch.setattr(S3Backend, "put_file", flaky)
    with pytest.raises(StorageError, match="injected upload failure"):
        t.move_media("image", target.prefix)
    assert _raw(db, "t", "image") == before
    assert _files(tmp_path / "x.pxl.media") == files_before
    assert _sizes(t) == [(8, 8)] * len(COLORS)
    assert not _listing(target.settings, f"{target.prefix}{meta.uid}/")  # copies removed
    assert not catalog.pending_deletes(db.db)
    assert check(db.places).ok

    monkeypatch.undo()  # the retry succeeds
    assert t.move_media("image", target.prefix).num_rows == len(COLORS)
    assert _sizes(t) == [(8, 8)] * len(COLORS) and check(db.places).ok
    db.close()


def test_move_media_errors_before_copying(media_table, tmp_path):
    db, t, _ = media_table
    before = _raw(db, "t", "image")
    locations = catalog.all_locations(db.db)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(NotFoundError, match="nope"):
        t.move_media("nope", str(tmp_path / "d"))
    with pytest.raises(SchemaError, match="not"):
        t.move_media("k", str(tmp_path / "d"))
    with pytest.raises(ConfigError):
        t.move_media("image", "ftp://host/media/")
    with pytest.raises(ConfigError):
        t.move_media("image", str(blocker / "sub"))
    assert _raw(db, "t", "image") == before
    assert catalog.all_locations(db.db) == locations
    assert not (tmp_path / "d").exists()


def test_move_interrupted_after_commit_is_finished_by_fix(media_table, tmp_path, monkeypatch):
    db, t, user = media_table
    before = _raw(db, "t", "image")
    dest = tmp_path / "moved"
    monkeypatch.setattr(writes, "finish_deletes", lambda *a, **k: None)  # crash after commit
    monkeypatch.setattr(writes.Operation, "_end_writing", _ended_by_a_crash)
    st = t.move_media("image", str(dest))
    monkeypatch.undo()
    assert st.num_rows == 3 and st.num_skipped == 1   # the user's file stays
    after = _raw(db, "t", "image")
    assert after[3:] == before[3:] and all(u.startswith(dest.as_uri()) for u in after[:3])
    assert _sizes(t)[:3] == [(8, 8)] * 3
    report = check(db.places)
    assert sorted(report.orphans) == sorted(before[:3]) and len(report.pending) == 3
    fixed = check(db.places, fix=True)
    assert fixed.ok and not any(storage.file_path(u).exists() for u in before[:3])
    assert user.exists() and not catalog.pending_deletes(db.db)
    # Moving again to the same place is a no-op.
    again = t.move_media("image", str(dest))
    assert again.num_rows == 0 and again.num_skipped == 4
    assert check(db.places).ok


def test_a_concurrent_check_keeps_the_copies_of_a_move_in_progress(media_table, tmp_path,
                                                                   monkeypatch):
    """Another process's check(fix=True) between the copies and the switch finds the copies
    named by no row yet: the move is registered as writing the table, so they are kept
    ("an operation in progress may name it"), not removed; the switch then names them."""
    from pxlite import maintenance

    db, t, _ = media_table
    before = _raw(db, "t", "image")
    real, reports = maintenance._parallel, []

    def spy(fn, items, *args, **kwargs):
        yield from real(fn, items, *args, **kwargs)
        if fn.__name__ == "copy_one" and not reports:
            other = pxl.connect(tmp_path / "x.pxl")
            reports.append(check(other.places, fix=True))
            other.close()

    monkeypatch.setattr(maintenance, "_parallel", spy)
    st = t.move_media("image", str(tmp_path / "moved"))
    (report,) = reports
    assert not report.fixed and not report.ok
    assert len(report.kept) == 3 and {why.split(" (")[0] for _, why in report.kept} == {
        writes.IN_FLIGHT}
    after = _raw(db, "t", "image")
    assert st.num_rows == 3 and sorted(u for u, _ in report.kept) == sorted(after[:3])
    assert after[3:] == before[3:] and _sizes(t)[:3] == [(8, 8)] * 3
    assert check(db.places).ok


# (fault point, which hit): the 1st commit records the new location, the 2nd switches rows.
FAULTS = [("file_written", 1), ("file_written", 3), ("before_commit", 1), ("before_commit", 2),
          ("after_commit", 1), ("after_commit", 2), ("before_file_delete", 1)]


@pytest.mark.parametrize("fault,nth", FAULTS)
def test_move_interrupted_at_any_fault_point(media_table, tmp_path, monkeypatch, fault, nth):
    """Wherever a move dies, every row names a readable file, and check(fix=True) leaves a
    clean database."""
    from pxlite import faults

    db, t, user = media_table
    before = _raw(db, "t", "image")
    hits = []

    def point(name):
        if name == fault:
            hits.append(name)
            if len(hits) == nth:
                raise RuntimeError(f"crash at {name}")

    monkeypatch.setattr(faults, "point", point)
    with pytest.raises(RuntimeError, match="crash at"):
        t.move_media("image", str(tmp_path / "moved"))
    monkeypatch.undo()
    after = _raw(db, "t", "image")
    # One transaction switches the references: all old or all new, never a mix.
    moved = (tmp_path / "moved").as_uri()
    assert after == before or all(u.startswith(moved) for u in after[:3])
    assert after[3:] == before[3:]
    switched = (fault, nth) in (("after_commit", 2), ("before_file_delete", 1))
    assert (after != before) == switched
    assert _sizes(t)[:4] == [(8, 8)] * 3 + [Image.open(user).size]
    assert check(db.places, fix=True).ok
    assert check(db.places).ok and _sizes(t)[:3] == [(8, 8)] * 3
