"""Snapshots (issue 20, point 3): ``pxl.create_snapshot(path, t)`` names a version in O(1)
(no rows or files copied), reads as it was, keeps its version and files alive until dropped,
and shares the namespace of tables and directories."""

from __future__ import annotations

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog
from pxlite.errors import AlreadyExistsError, NotFoundError, SchemaError, VersionError
from pxlite.snapshots import TableVersion


def _media_files(db) -> set[str]:
    return {str(p) for p in db.media_dir.rglob("*") if p.is_file()}


def _table(db, n: int = 4):
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (8, 8), (50 * i, 0, 0)), "n": i} for i in range(n)])
    return t


def test_a_snapshot_is_made_in_o1_and_reads_its_version(db):
    """Retention 0 (the tests' default): only what a snapshot pins survives the next write."""
    t = _table(db)
    schema = db.db.query("SELECT count(*) FROM sqlite_schema")[0][0]
    size = db.path.stat().st_size
    snap = pxl.create_snapshot("snap", t)
    assert isinstance(snap, TableVersion) and snap.get_metadata()["path"] == "snap"
    assert db.db.query("SELECT count(*) FROM sqlite_schema")[0][0] == schema  # no new tables
    assert db.path.stat().st_size == size  # nothing copied
    files = _media_files(db)
    t.delete(where=t.n >= 2)
    t.update({"n": t.n + 10})
    assert _media_files(db) == files  # the deleted rows' files: named by the snapshot
    assert sorted(db.get_table("snap").collect()["n"]) == [0, 1, 2, 3]
    sizes = [r["img"].getpixel((0, 0))[0] // 50 for r in
             snap.select(snap.img).order_by(snap.n).collect()]
    assert sizes == [0, 1, 2, 3]
    md = snap.get_metadata()
    assert (md["kind"], md["base"], md["version"], md["is_snapshot"]) == ("snapshot", "t", 1, True)
    assert db.check().ok
    assert [v["version"] for v in t.get_versions()] == [3, 2, 1]  # 0 pruned; 1 pinned


def test_dropping_a_snapshot_lets_its_versions_and_files_go(db):
    t = _table(db)
    pxl.create_snapshot("snap", t)
    files = _media_files(db)
    t.delete(where=t.n >= 1)
    assert _media_files(db) == files
    db.drop_table("snap")
    assert len(_media_files(db)) == len(files) - 3  # pruned at once, files released
    assert [v["version"] for v in t.get_versions()] == [2]
    assert "snap" not in db.list_tables()
    with pytest.raises(NotFoundError, match="does not exist"):
        db.get_table("snap")
    assert db.check().ok


def test_a_snapshot_of_a_version_pins_that_version(db):
    pxl.configure(version_retention_days=30)
    t = db.create_table("t", {"n": pxl.Int})
    for i in range(4):
        t.insert([{"n": i}])
    snap = pxl.create_snapshot("old", db.get_table("t:2"))
    assert snap.collect()["n"] == [0, 1]
    t.set_version_retention(count=1)
    assert [v["version"] for v in t.get_versions()] == [4, 3, 2]  # 2 and after kept
    assert db.get_table("old").collect()["n"] == [0, 1]
    t.revert(to=2)  # a snapshot's version can be reverted to
    assert t.collect()["n"] == [0, 1]


def test_snapshots_share_the_namespace_and_are_listed(db):
    db.create_dir("d")
    t = _table(db)
    db.create_snapshot("d.s1", t)
    assert db.list_tables() == ["d.s1", "t"] and db.list_tables("d") == ["d.s1"]
    with pytest.raises(AlreadyExistsError, match=r"a snapshot named 'd\.s1' exists already"):
        db.create_table("d.s1", {"n": pxl.Int})
    with pytest.raises(AlreadyExistsError, match=r"a snapshot named 'd\.s1' exists already"):
        db.create_snapshot("d.s1", t)
    with pytest.raises(AlreadyExistsError, match="a table named 't' exists already"):
        db.create_snapshot("t", t)
    with pytest.raises(AlreadyExistsError, match=r"a snapshot named 'd\.s1'"):
        db.create_dir("d.s1")
    t.insert([{"n": 9}])
    assert db.create_snapshot("d.s1", t, if_exists="ignore").count() == 4
    assert db.create_snapshot("d.s1", t, if_exists="replace").count() == 5
    with pytest.raises(NotFoundError, match=r"'d\.s1' is a snapshot"):
        catalog.load_table(db.db, "d.s1")
    with pytest.raises(NotFoundError, match="directory 'nodir' does not exist"):
        db.create_snapshot("nodir.s", t)
    with pytest.raises(SchemaError, match="invalid snapshot path"):
        db.create_snapshot("bad name", t)
    with pytest.raises(SchemaError, match="takes a table"):
        pxl.create_snapshot("x", "t")  # type: ignore[arg-type]


def test_a_table_with_snapshots_is_dropped_only_with_force(db):
    db.create_dir("d")
    t = _table(db)
    db.create_snapshot("d.s", t)
    with pytest.raises(SchemaError, match=r"has snapshot\(s\) 'd\.s': drop them first"):
        db.drop_table("t")
    with pytest.raises(SchemaError, match="has snapshot"):
        db.create_table("t", {"n": pxl.Int}, if_exists="replace")
    db.drop_table("t", force=True)
    assert db.list_tables() == [] and not _media_files(db)
    t = _table(db)
    db.create_snapshot("d.s", t)
    db.drop_dir("d", force=True)
    assert db.list_tables() == ["t"]
    db.create_dir("e")
    db.create_snapshot("e.s", t)
    db.drop_dir("e", force=True)  # the snapshot goes, the table (elsewhere) stays
    assert db.list_tables() == ["t"] and db.check().ok


def test_a_snapshot_is_read_only_and_survives_reopening(tmp_path):
    p = tmp_path / "s.pxl"
    with pxl.connect(p) as db:
        t = _table(db)
        db.create_snapshot("s", t)
        t.delete()
    with pxl.connect(p) as db:
        s = db.get_table("s")
        assert s.count() == 4
        with pytest.raises(VersionError, match="'s' is version 1 of table 't', read-only"):
            s.insert([{"n": 1}])
        assert db.check().ok
