"""Revert to any kept version (issue 20, point 2): rows, columns and media files come back
byte-identical, locally and in a bucket; a revert is a version and can be reverted; check stays
clean after every step."""

from __future__ import annotations

import hashlib
import os

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog, storage
from pxlite.errors import NotFoundError, SchemaError, VersionError

COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]


@pytest.fixture(autouse=True)
def keep_versions():
    """Versions kept 30 days (the default; the tests' environment keeps none)."""
    pxl.configure(version_retention_days=30)


def _connect(tmp_path, target, **extra):
    cfg = {**target.config, "input_media_dest": target.prefix, "version_retention_days": 30,
           **extra}
    return pxl.connect(tmp_path / "r.pxl", config=cfg)


def _files(target) -> dict[str, str]:
    """Every file under the destination, with the SHA-256 of its bytes."""
    backend = storage.get_backend(target.prefix, target.settings)
    out = {}
    for uri in backend.list(target.prefix):
        with backend.open(uri) as f:
            out[uri] = hashlib.sha256(f.read()).hexdigest()
    return out


def _rows(t) -> list[tuple]:
    rows = t.select(t.n, t.img.fileurl, t.rot.fileurl).order_by(t.n).collect()
    return [tuple(r.values()) for r in rows]


def _ok(conn) -> None:
    report = conn.check()
    assert report.ok, str(report)


def _table(conn, target):
    t = conn.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (16, 12), c), "n": i} for i, c in enumerate(COLOURS)])
    t.add_computed_column(rot=t.img.rotate(90), destination=target.prefix)
    return t


@pytest.fixture
def made(storage_target, tmp_path):
    """(connection, table, its rows, the files under the destination with their hashes)."""
    conn = _connect(tmp_path, storage_target)
    t = _table(conn, storage_target)
    yield conn, t, _rows(t), _files(storage_target)
    conn.close()


@pytest.mark.parametrize("storage_target", ["local", "s3"], indirect=True)
def test_reverting_a_delete_brings_rows_and_files_back_byte_identical(storage_target, made):
    conn, t, rows, files = made
    assert len(files) == 8
    _ok(conn)
    t.delete(where=t.n >= 2)
    assert t.count() == 2
    assert _files(storage_target) == files  # kept: version 2 names them
    _ok(conn)
    status = t.revert()
    assert status.num_rows == 2 and "Reverted 2 rows" in str(status)
    assert _rows(t) == rows and _files(storage_target) == files
    pixels = [r["img"].getpixel((0, 0)) for r in t.select(t.img).order_by(t.n).collect()]
    assert [tuple(round(v / 50) for v in p) for p in pixels] == \
        [tuple(round(v / 50) for v in c) for c in COLOURS]
    assert t.select(t.rot).order_by(t.n).collect()[3]["rot"].size == (16, 12)
    _ok(conn)
    t.revert(to=3)  # the revert is a version: go back to the delete, then forward again
    assert t.count() == 2
    _ok(conn)
    t.revert(to=4)
    assert _rows(t) == rows and _files(storage_target) == files
    _ok(conn)


@pytest.mark.parametrize("storage_target", ["local", "s3"], indirect=True)
def test_reverting_a_drop_column_brings_the_column_and_its_files_back(storage_target, made):
    conn, t, rows, files = made
    t.drop_column("rot")
    assert t.columns() == ["img", "n"] and not hasattr(t, "rot")
    assert _files(storage_target) == files  # hidden, not gone: version 2 names it
    _ok(conn)
    t.insert([{"img": Image.new("RGB", (4, 4), "white"), "n": 9}])  # no rot for it
    white = set(_files(storage_target)) - set(files)
    t.revert(to=2)
    assert t.columns() == ["img", "n", "rot"]
    assert _rows(t) == rows
    # the white image stays while version 4 is kept: its row can come back too
    assert _files(storage_target) == {**files, **{u: _files(storage_target)[u] for u in white}}
    _ok(conn)


@pytest.mark.parametrize("storage_target", ["local"], indirect=True)
def test_reverting_an_update_restores_the_replaced_files(storage_target, made):
    conn, t, rows, files = made
    t.update({"img": Image.new("RGB", (6, 6), "white")}, where=t.n == 0)
    changed = _files(storage_target)
    assert set(files) < set(changed) and len(changed) == 10  # old files kept, new ones added
    assert _rows(t)[0] != rows[0]
    _ok(conn)
    t.revert()
    assert _rows(t) == rows
    assert {u: h for u, h in _files(storage_target).items() if u in files} == files
    _ok(conn)


def test_revert_steps_back_through_the_history_as_pixeltables_does(db):
    """Pixeltable's test_revert: insert twice, revert, insert again, revert to version 0, and
    reverting past it is an error naming version 0."""
    t = db.create_table("t", {"c1": pxl.Int, "c2": pxl.String})
    rows1 = [{"c1": i, "c2": f"a{i}"} for i in range(10)]
    rows2 = [{"c1": i, "c2": f"b{i}"} for i in range(10, 25)]
    t.insert(rows1)
    t.insert(rows2)
    assert t.count() == 25 and t.get_metadata()["version"] == 2
    t.revert()
    assert t.count() == 10
    t.insert(rows2)
    assert t.count() == 25
    t.revert()
    t.revert()
    assert t.count() == 0
    with pytest.raises(VersionError, match="version 0"):
        t.revert()
    last = dict(t.get_versions(1)[0])
    del last["created_at"]
    assert last == {"version": 6, "kind": "revert", "change_type": "data", "inserts": 0,
                    "updates": 0, "deletes": 10, "schema_change": None, "reverted_to": 0}


def test_revert_goes_to_any_version_and_back(db):
    t = db.create_table("t", {"n": pxl.Int})
    for i in range(5):
        t.insert([{"n": i}])
    t.delete(where=t.n <= 1)
    t.update({"n": t.n * 10})
    states = {v: sorted(db.get_table(f"t:{v}").collect()["n"]) for v in range(8)}
    assert states[7] == [20, 30, 40]
    for target in (3, 0, 6, 1, 7, 5):
        t.revert(to=target)
        assert sorted(t.collect()["n"]) == states[target], target
    assert t.get_versions(1)[0]["reverted_to"] == 5
    assert db.check().ok


def test_revert_restores_column_names_positions_and_destinations(db, tmp_path):
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (8, 8), "red"), "n": 1}])
    t.add_computed_column(rot=t.img.rotate(90))
    before = (t.columns(), [r for r in db.db.query(
        "SELECT name, position, destination FROM px_columns ORDER BY col_id")])
    url = t.select(t.rot.fileurl).collect()[0]["rot_fileurl"]
    t.rename_column("n", "k")
    t.move_media("rot", str(tmp_path / "elsewhere"))
    t.add_column(n=pxl.String)
    assert t.columns() == ["img", "k", "rot", "n"]
    t.revert(to=2)
    after = (t.columns(), [r for r in db.db.query(
        "SELECT name, position, destination FROM px_columns ORDER BY col_id")])
    assert after == before
    assert t.select(t.rot.fileurl).collect()[0]["rot_fileurl"] == url
    assert os.path.exists(storage.file_path(url))
    assert db.check().ok
    t.revert(to=5)  # forward again: 'n' is a String beside 'k'
    assert t.columns() == ["img", "k", "rot", "n"]
    assert db.check().ok


def test_rows_inserted_after_a_revert_never_take_a_reverted_rows_rowid(db):
    t = db.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(3)])
    t.insert([{"n": i} for i in range(3, 6)])
    t.revert()
    t.insert([{"n": 100}])
    meta = catalog.load_table(db.db, "t")
    assert [r[0] for r in db.db.query(f"SELECT _rowid FROM {meta.sql}")] == [1, 2, 3, 7]
    assert sorted(db.get_table("t:2").collect()["n"]) == [0, 1, 2, 3, 4, 5]
    assert sorted(db.get_table("t:3").collect()["n"]) == [0, 1, 2]
    t.revert(to=2)
    assert sorted(t.collect()["n"]) == [0, 1, 2, 3, 4, 5]


def test_a_revert_that_changes_nothing_is_no_version(db):
    t = db.create_table("t", {"n": pxl.Int})
    t.insert([{"n": 1}])
    assert t.revert(to=1).num_rows == 0
    assert [v["version"] for v in t.get_versions()] == [1, 0]


def test_bad_reverts_are_clear_errors(db, tmp_path):
    t = db.create_table("t", {"n": pxl.Int}, version_retention_count=3)
    for i in range(5):
        t.insert([{"n": i}])
    with pytest.raises(NotFoundError, match="no version 9 yet: its current version is 5"):
        t.revert(to=9)
    with pytest.raises(NotFoundError, match="version 1 of table 't' is not kept any more "
                                            r"\(it keeps versions 3 to 5\)"):
        t.revert(to=1)
    with pytest.raises(SchemaError, match="takes a version number"):
        t.revert(to="3")  # type: ignore[arg-type]
    t.revert(to=3)
    t.revert(to=4)
    t.revert(to=5)
    with pytest.raises(VersionError, match="version 4, before the change that made its "
                                           r"current content, is not kept any more"):
        t.revert()  # content of 5, which came on top of 4 (pruned: 3 versions are kept)
    assert db.check().ok


def test_no_revert_while_a_column_is_being_added_or_a_job_runs_elsewhere(db):
    from pxlite import jobs

    t = db.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(3)])
    with db.db.transaction():  # an add_computed_column interrupted half-way
        meta = catalog.load_table(db.db, "t")
        col = catalog.add_column(db.db, meta, "m", pxl.Int, expr='{"col": 1}', pending=True)
        catalog.start_job(db.db, meta.id, "add_computed_column", {"col_id": col.col_id}, 3,
                          os.getpid(), jobs.host())
    with pytest.raises(VersionError, match="column 'm' is being added"):
        t.revert(to=0)
    t.drop_column("m")
    with db.db.transaction():  # a recompute running in another live process
        catalog.start_job(db.db, meta.id, "recompute_columns", {}, 3, os.getppid(), jobs.host())
    with pytest.raises(VersionError, match="while recompute_columns runs"):
        t.revert(to=0)
    with db.db.transaction():  # the same, interrupted: its process is gone
        db.db.execute("UPDATE px_jobs SET pid = ?", (2**22 + 12345,))
    t.revert(to=0)
    assert t.count() == 0 and not catalog.jobs(db.db)


def test_revert_of_a_table_with_a_primary_key_whose_rows_swapped_keys(db):
    t = db.create_table("t", {"k": pxl.Int, "s": pxl.String}, primary_key="k")
    t.insert([{"k": 1, "s": "a"}, {"k": 2, "s": "b"}, {"k": 3, "s": "c"}])
    t.update({"k": 10}, where=t.k == 1)
    t.update({"k": 1}, where=t.k == 2)   # row 2 takes the key row 1 had
    t.update({"k": 2}, where=t.k == 10)  # and row 1 the key row 2 had
    t.delete(where=t.k == 3)
    t.insert([{"k": 3, "s": "new"}])     # another row takes the deleted row's key
    t.revert(to=1)
    assert sorted((r["k"], r["s"]) for r in t.collect()) == [(1, "a"), (2, "b"), (3, "c")]
    last = t.get_versions(1)[0]
    assert (last["updates"], last["deletes"], last["inserts"]) == (2, 1, 1)  # row 3 is back
    t.revert(to=6)  # and forward again (revert() would step back further, to version 0)
    assert sorted((r["k"], r["s"]) for r in t.collect()) == [(1, "b"), (2, "a"), (3, "new")]
    assert db.check().ok
