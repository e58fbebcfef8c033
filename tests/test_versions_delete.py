"""A delete of a versioned table copies the rows it deletes into the undo log in one pass and
then deletes them by rowid, read back from the log (versions.delete_rows). Within one version
the rows it meets may have a history already: updated earlier ('u'), deleted earlier, inserted
by this version (above its high-water mark) or brought back by a revert of this version ('i').
Each is deleted, counted once, and the version reads back and reverts exactly."""

from __future__ import annotations

import pytest

import pxlite as pxl
from pxlite import catalog, versions, writes
from pxlite.plan import Rows


@pytest.fixture
def vdb(tmp_path):
    conn = pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30})
    yield conn
    conn.close()


def _table(vdb: pxl.Connection) -> tuple[pxl.Table, catalog.TableMeta, str]:
    t = vdb.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(10)])  # rowids 1..10, n = rowid - 1
    meta = catalog.load_table(vdb.db, "t")
    return t, meta, meta.column("n").sql


def _ns(t: pxl.Table) -> list[int]:
    return sorted(t.collect()["n"])


def test_a_delete_counts_and_keeps_each_row_once_within_a_version(vdb):
    t, meta, n = _table(vdb)
    db = vdb.db
    with writes.operation(vdb.places, meta, kind="delete", capture="statements"):
        versions.capture_rows(db, meta, Rows.matching(f"{n} IN (1, 2)"))
        db.execute(f"UPDATE {meta.sql} SET {n} = {n} + 100 WHERE {n} IN (1, 2)")
        assert versions.delete_rows(db, meta, Rows.matching(f"{n} < 5")) == 3  # 0, 3, 4
        # rows deleted already are not found again; a row updated in this version is deleted
        # with its first image (before the update) kept
        assert versions.delete_rows(db, meta, Rows.matching(f"{n} < 5 OR {n} = 102")) == 1
        db.execute(f"INSERT INTO {meta.sql}(_rowid, {n}) VALUES (50, 7), (51, 1000)")
        # a row this version inserted goes too, and has nothing to keep
        assert versions.delete_rows(db, meta, Rows.matching(f"{n} = 7")) == 2
    assert _ns(t) == [5, 6, 8, 9, 101, 1000]
    v = t.get_versions(1)[0]
    assert (v["deletes"], v["updates"], v["inserts"]) == (5, 1, 1)
    assert _ns(vdb.get_table("t:1")) == list(range(10))
    t.revert()
    assert _ns(t) == list(range(10))
    assert pxl.check(db=vdb).ok


def test_a_row_a_revert_brought_back_can_be_deleted_in_the_same_version(vdb):
    t, meta, n = _table(vdb)
    t.delete(where=t.n >= 7)  # version 2: rowids 8..10 go
    db = vdb.db
    with writes.operation(vdb.places, meta, kind="revert", capture="statements"):
        versions.revert(db, meta, 1)  # back: marked 'i' in this version
        assert db.query(f"SELECT count(*) FROM {meta.sql}")[0][0] == 10
        assert versions.delete_rows(db, meta, Rows.matching(f"{n} IN (0, 8)")) == 2
    assert _ns(t) == [1, 2, 3, 4, 5, 6, 7, 9]
    assert _ns(vdb.get_table("t:2")) == list(range(7))
    t.revert(to=2)  # as that version was
    assert _ns(t) == list(range(7))
    assert pxl.check(db=vdb).ok


def test_an_unversioned_delete_counts_the_rows(vdb):
    t = vdb.create_table("u", {"n": pxl.Int}, versioned=False)
    t.insert([{"n": i} for i in range(10)])
    assert t.delete(where=t.n < 4).num_rows == 4
    assert _ns(t) == list(range(4, 10))
