"""Every change is a version (issue 20, point 1): get_versions(), history(), get_metadata(),
what each operation records, unversioned tables, and databases from before versions."""

from __future__ import annotations

import sqlite3
import sys

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog
from pxlite.db import SCHEMA_VERSION
from pxlite.errors import SchemaError, VersionError
from pxlite.results import ResultSet


@pytest.fixture
def vdb(tmp_path):
    """A database keeping its versions (the tests' default keeps none, see conftest)."""
    conn = pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30})
    yield conn
    conn.close()


def _kinds(t: pxl.Table) -> list[tuple[int, str, int, int, int]]:
    return [(v["version"], v["kind"], v["inserts"], v["updates"], v["deletes"])
            for v in reversed(t.get_versions())]


def _red(n: int) -> Image.Image:
    return Image.new("RGB", (8, 8), (n * 20 % 256, 0, 0))


def test_each_change_is_one_version_with_its_counts(vdb):
    t = vdb.create_table("t", {"n": pxl.Int, "s": pxl.String})
    assert t.get_metadata()["version"] == 0
    t.insert([{"n": i, "s": str(i)} for i in range(5)])
    t.update({"s": "x"}, where=t.n < 2)
    t.delete(where=t.n == 4)
    t.add_column(f=pxl.Float)
    t.rename_column("f", "g")
    t.drop_column("g")
    assert _kinds(t) == [(0, "create", 0, 0, 0), (1, "insert", 5, 0, 0), (2, "update", 0, 2, 0),
                         (3, "delete", 0, 0, 1), (4, "add_column", 0, 0, 0),
                         (5, "rename_column", 0, 0, 0), (6, "drop_column", 0, 0, 0)]
    changes = {v["version"]: (v["change_type"], v["schema_change"]) for v in t.get_versions()}
    assert changes[4] == ("schema", "added 'f'")
    assert changes[5] == ("schema", "renamed 'f' to 'g'")
    assert changes[6] == ("schema", "dropped 'g'")
    assert changes[2] == ("data", None)
    md = t.get_metadata()
    assert md["version"] == 6 and md["is_data_versioned"] and list(md["columns"]) == ["n", "s"]
    assert md["version_created"] == t.get_versions(1)[0]["created_at"]


def test_a_change_that_changes_nothing_is_no_version(vdb):
    t = vdb.create_table("t", {"n": pxl.Int})
    t.insert([{"n": 1}])
    t.delete(where=t.n == 99)
    t.update({"n": 5}, where=t.n == 99)
    t.add_column(n=pxl.Int, if_exists="ignore")
    assert [v["version"] for v in t.get_versions()] == [1, 0]


def test_several_statements_in_one_version_record_the_state_before_it(vdb):
    """An update whose computed column is recomputed in the same transaction: one version,
    each row counted once, and the version before it reads the old values."""
    t = vdb.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(4)])
    t.add_computed_column(m=t.n * 10)
    t.update({"n": t.n + 1}, where=t.n >= 2)
    assert _kinds(t)[-1] == (3, "update", 0, 2, 0)
    old = vdb.get_table("t:2").order_by(vdb.get_table("t:2").n).collect()
    assert [(r["n"], r["m"]) for r in old] == [(0, 0), (1, 10), (2, 20), (3, 30)]


def test_long_operations_are_one_version_each(vdb, tmp_path):
    t = vdb.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": _red(i), "n": i} for i in range(40)])
    t.add_computed_column(rot=t.img.rotate(90))
    t.recompute_columns("rot")
    t.move_media("rot", str(tmp_path / "moved"))
    kinds = _kinds(t)
    assert [k[:2] for k in kinds[2:]] == [(2, "add_computed_column"), (3, "recompute_columns"),
                                         (4, "move_media")]
    assert kinds[3][3] == 40 and kinds[4][3] == 40  # every row's cell, counted once
    assert {v["schema_change"] for v in t.get_versions(3)} == {
        "added 'rot'", None, "changed destination of 'rot'"}
    assert vdb.check().ok


def test_a_recompute_in_batches_goes_on_in_its_version_only_while_it_is_the_latest(vdb):
    from pxlite import compute

    t = vdb.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(50)])
    t.add_computed_column(m=t.n + 1)
    other = pxl.connect(vdb.path, config={"version_retention_days": 30})
    commits = []
    real = compute._commit_batch

    def batch(op, *a, **kw):
        real(op, *a, **kw)
        commits.append(op.version)
        if len(commits) == 2:  # another program writes between two batches
            other.get_table("t").insert([{"n": 1000}])

    import unittest.mock as mock

    with mock.patch.object(compute, "_commit_batch", batch), \
            mock.patch.object(compute, "BATCH_SECONDS", 1e-9):
        t.recompute_columns("m")
    other.close()
    assert len(commits) > 3 and commits[0] == commits[1] == 3  # batches share version 3
    assert commits[2] == 5 and commits[-1] == 5  # after the insert (4): a version of its own
    assert [k[1] for k in _kinds(t)[3:]] == ["recompute_columns", "insert", "recompute_columns"]


def test_get_versions_n_and_history(vdb, monkeypatch):
    t = vdb.create_table("t", {"n": pxl.Int})
    for i in range(3):
        t.insert([{"n": i}])
    assert [v["version"] for v in t.get_versions(2)] == [3, 2]
    frame = t.history(2)
    assert list(frame["version"]) == [3, 2] and list(frame["kind"]) == ["insert", "insert"]
    assert list(frame.columns) == ["version", "created_at", "kind", "change_type", "inserts",
                                   "updates", "deletes", "schema_change", "reverted_to"]
    monkeypatch.setitem(sys.modules, "pandas", None)  # without pandas: a ResultSet
    rs = t.history()
    assert isinstance(rs, ResultSet) and rs["version"] == [3, 2, 1, 0]
    assert "insert" in str(rs)
    with pytest.raises(SchemaError, match="n= takes a whole number"):
        t.get_versions(-1)


def test_an_unversioned_table_keeps_no_versions_and_frees_files_at_once(vdb):
    t = vdb.create_table("ops", {"img": pxl.Image, "n": pxl.Int}, versioned=False)
    t.insert([{"img": _red(i), "n": i} for i in range(3)])
    files = sorted(vdb.media_dir.rglob("*.jpg"))
    t.delete(where=t.n == 0)
    assert len(sorted(vdb.media_dir.rglob("*.jpg"))) == len(files) - 1
    t.add_column(x=pxl.Int)
    t.drop_column("x")
    assert "c3" not in catalog.sql_columns(vdb.db, "t_1")  # dropped at once, not hidden
    assert t.get_versions() == [] and t.get_metadata()["version"] is None
    assert not t.get_metadata()["is_data_versioned"]
    with pytest.raises(VersionError, match="versioned=False"):
        t.revert()
    with pytest.raises(VersionError, match="versioned=False"):
        vdb.get_table("ops:0")
    with pytest.raises(VersionError, match="versioned=False"):
        pxl.create_snapshot("snap", t)
    with pytest.raises(VersionError, match="versioned=False"):
        t.set_version_retention(days=1)
    assert vdb.check().ok


@pytest.mark.parametrize("kwargs,match", [
    ({"versioned": "no"}, "versioned= takes True or False"),
    ({"versioned": False, "version_retention_days": 3}, "apply to a versioned table"),
    ({"version_retention_days": -1}, "number of days >= 0"),
    ({"version_retention_count": 0}, "whole number >= 1"),
    ({"version_retention_count": 2.5}, "whole number >= 1"),
])
def test_bad_versioning_options_are_refused(vdb, kwargs, match):
    with pytest.raises(SchemaError, match=match):
        vdb.create_table("t", {"n": pxl.Int}, **kwargs)
    assert "t" not in vdb.list_tables()


def test_rowids_are_never_reused(vdb):
    """Deleting the last rows and inserting again gives new rowids: a row above a version's
    high-water mark did not exist at that version, so that version still reads right."""
    t = vdb.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(3)])
    t.delete(where=t.n >= 1)
    t.insert([{"n": 7}])
    meta = catalog.load_table(vdb.db, "t")
    assert vdb.db.query(f"SELECT _rowid FROM {meta.sql} ORDER BY _rowid") == [(1,), (4,)]
    assert vdb.get_table("t:2").collect()["n"] == [0]
    assert vdb.get_table("t:1").collect()["n"] == [0, 1, 2]


def test_two_connections_number_versions_in_turn(vdb):
    """Each writer starts its version under the write lock: numbers never collide, and each
    connection's triggers follow the columns another connection changed."""
    t = vdb.create_table("t", {"n": pxl.Int})
    other = pxl.connect(vdb.path, config={"version_retention_days": 30})
    t2 = other.get_table("t")
    t.insert([{"n": 1}])
    t2.add_column(s=pxl.String)
    t.update({"n": 2})
    t2.update({"s": "a"})
    t.drop_column("s")
    t2.delete()
    other.close()
    assert [k[:2] for k in _kinds(t)] == [(0, "create"), (1, "insert"), (2, "add_column"),
                                         (3, "update"), (4, "update"), (5, "drop_column"),
                                         (6, "delete")]
    rows = {v: vdb.get_table(f"t:{v}").collect().to_dicts() for v in range(7)}
    assert rows[3] == [{"n": 2, "s": None}] and rows[4] == [{"n": 2, "s": "a"}]
    assert rows[5] == [{"n": 2}] and rows[6] == []


def test_a_database_from_before_versions_starts_with_a_baseline(tmp_path):
    p = tmp_path / "old.pxl"
    with pxl.connect(p) as db:
        t = db.create_table("t", {"n": pxl.Int})
        t.insert([{"n": 1}, {"n": 2}])
        meta = catalog.load_table(db.db, "t")
    con = sqlite3.connect(p)  # what a schema-5 file holds: no versions, no undo log
    for name in ("px_versions", "px_dropped_columns", "px_version_policy", "px_snapshots",
                 f"h_{meta.id}"):
        con.execute(f"DROP TABLE {name}")
    con.execute("ALTER TABLE px_indexes DROP COLUMN params")  # (schema 7)
    con.execute("DROP TABLE px_views")  # (schema 8)
    con.execute("PRAGMA user_version = 5")  # the schema before versions (6 added them)
    assert SCHEMA_VERSION == 8
    con.commit()
    con.close()
    with pxl.connect(p, config={"version_retention_days": 30}) as db:
        t = db.get_table("t")
        assert [(v["version"], v["kind"]) for v in t.get_versions()] == [(0, "baseline")]
        assert db.get_table("t:0").count() == 2
        t.delete(where=t.n == 1)
        t.insert([{"n": 3}])
        assert sorted(db.get_table("t:0").collect()["n"]) == [1, 2]
        assert sorted(db.get_table("t:1").collect()["n"]) == [2]
        t.revert(to=0)
        assert sorted(t.collect()["n"]) == [1, 2]
        assert db.check().ok


def test_dropped_columns_kept_for_versions_count_toward_the_column_limit(vdb, monkeypatch):
    monkeypatch.setattr(type(vdb.db), "max_columns", lambda self: 15)  # room for 4 columns
    t = vdb.create_table("t", {"a": pxl.Int, "b": pxl.Int, "c": pxl.Int})
    t.insert([{"a": 1, "b": 2, "c": 3}])
    t.drop_column("c")  # hidden: version 1 names it
    t.add_column(d=pxl.Int)
    with pytest.raises(SchemaError, match="has 3 columns and 1 dropped ones its kept versions "
                                          r"still name, the most .* \(4: .*prune its versions"):
        t.add_column(e=pxl.Int)
    t.update({"d": 4})  # the undo log holds every SQL column of the table, within the limit
    assert vdb.get_table("t:1").collect().to_dicts() == [{"a": 1, "b": 2, "c": 3}]


def test_the_triggers_capture_any_statement_of_an_operation(vdb):
    """The generic capture (an operation that does not copy its rows itself): updates, deletes
    and a replace, several on one row, recorded as the state before the version."""
    from pxlite import writes

    t = vdb.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(4)])  # rowids 1..4
    meta = catalog.load_table(vdb.db, "t")
    n = meta.column("n").sql
    with writes.operation(vdb.places, meta):
        vdb.db.execute(f"UPDATE {meta.sql} SET {n} = 10 WHERE _rowid = 1")
        vdb.db.execute(f"UPDATE {meta.sql} SET {n} = 11 WHERE _rowid = 1")  # first image wins
        vdb.db.execute(f"DELETE FROM {meta.sql} WHERE _rowid = 2")
        vdb.db.execute(f"UPDATE {meta.sql} SET {n} = 30 WHERE _rowid = 3")
        vdb.db.execute(f"DELETE FROM {meta.sql} WHERE _rowid = 3")  # updated, then deleted
        vdb.db.execute(f"INSERT OR REPLACE INTO {meta.sql}(_rowid, {n}) VALUES (4, 40)")
    v = t.get_versions(1)[0]
    assert (v["version"], v["kind"], v["updates"], v["deletes"]) == (2, "write", 2, 2)
    assert sorted(vdb.get_table("t:1").collect()["n"]) == [0, 1, 2, 3]
    assert sorted(t.collect()["n"]) == [11, 40]
    t.revert()
    assert sorted(t.collect()["n"]) == [0, 1, 2, 3]
    assert t.get_versions(1)[0]["updates"] == 2 and t.get_versions(1)[0]["inserts"] == 2
