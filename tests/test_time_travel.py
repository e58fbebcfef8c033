"""Time travel (issue 20, point 3): ``get_table('dir.t:3')`` is a read-only handle on version 3:
queries, counts, media reads, the columns of that version; every write is a clear error."""

from __future__ import annotations

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog, writes
from pxlite.errors import NotFoundError, SchemaError, VersionError
from pxlite.snapshots import TableVersion


@pytest.fixture(autouse=True)
def keep_versions():
    pxl.configure(version_retention_days=30)


@pytest.fixture
def history(db):
    """Versions: 0 create, 1 insert 6 rows, 2 update, 3 delete, 4 add 'extra', 5 drop 'label'."""
    db.create_dir("dir")
    t = db.create_table("dir.t", {"img": pxl.Image, "n": pxl.Int, "label": pxl.String})
    t.insert([{"img": Image.new("RGB", (8 + i, 8), (40 * i, 0, 0)), "n": i,
               "label": "even" if i % 2 == 0 else "odd"} for i in range(6)])
    t.update({"label": "big"}, where=t.n >= 4)
    t.delete(where=t.n <= 1)
    t.add_column(extra=pxl.Float)
    t.drop_column("label")
    return db, t


def test_a_version_reads_as_it_was(history):
    db, t = history
    v2 = db.get_table("dir.t:2")
    assert isinstance(v2, TableVersion) and v2.get_metadata()["path"] == "dir.t:2"
    assert v2.columns() == ["img", "n", "label"]
    assert v2.count() == 6
    rows = v2.select(v2.n, v2.label).where(v2.n >= 3).order_by(v2.n, asc=False).collect()
    assert [(r["n"], r["label"]) for r in rows] == [(5, "big"), (4, "big"), (3, "odd")]
    assert v2.where(v2.label == "even").count() == 2
    assert [r["n"] for r in v2.limit(2).collect()] == [0, 1]
    # media of rows deleted since: read back from their files
    imgs = v2.select(v2.img, w=v2.img.width).where(v2.n <= 1).order_by(v2.n).collect()
    assert [r["img"].size for r in imgs] == [(8, 8), (9, 8)] and imgs["w"] == [8, 9]
    assert imgs[1]["img"].getpixel((0, 0))[0] in range(30, 50)
    v1 = db.get_table("dir.t:1")
    assert sorted(v1.collect()["label"]) == ["even"] * 3 + ["odd"] * 3
    v5 = db.get_table("dir.t:5")
    assert v5.columns() == ["img", "n", "extra"] and v5.count() == 4
    assert db.get_table("dir.t:0").count() == 0
    assert t.columns() == ["img", "n", "extra"]


def test_a_version_groups_and_streams(history):
    """The query engine reads a version's view as it reads a table: group_by, aggregates, a
    streaming cursor."""
    import pxlite.functions as pxlf

    db, _ = history
    v2 = db.get_table("dir.t:2")
    got = v2.group_by(v2.label).select(v2.label, n=pxlf.count(v2.n), top=pxlf.max(v2.n)) \
        .order_by(v2.label).collect()
    assert [tuple(r.values()) for r in got] == [("big", 2, 5), ("even", 2, 2), ("odd", 2, 3)]
    assert sum(1 for _ in v2.cursor()) == 6
    meta = v2._meta()  # and in plain SQL, over the version's view
    label = meta.column("label")
    assert db.db.query(f"SELECT {label.sql}, count(*) FROM {meta.sql} GROUP BY 1 ORDER BY 1") \
        == [("big", 2), ("even", 2), ("odd", 2)]


def test_a_version_stays_what_it_was_while_the_table_changes(history):
    db, t = history
    v3 = db.get_table("dir.t:3")
    before = v3.select(v3.n, v3.label).order_by(v3.n).collect().to_dicts()
    t.insert([{"n": 100}])
    t.delete()
    t.revert(to=1)
    assert v3.select(v3.n, v3.label).order_by(v3.n).collect().to_dicts() == before
    other = pxl.connect(db.path)  # another connection reads the same version
    assert other.get_table("dir.t:3").select(other.get_table("dir.t:3").n).order_by(
        other.get_table("dir.t:3").n).collect()["n"] == [2, 3, 4, 5]
    other.close()


@pytest.mark.parametrize("call", [
    lambda v: v.insert([{"n": 1}]),
    lambda v: v.update({"n": 1}),
    lambda v: v.delete(),
    lambda v: v.add_column(x=pxl.Int),
    lambda v: v.add_computed_column(m=v.n + 1),
    lambda v: v.drop_column("n"),
    lambda v: v.rename_column("n", "k"),
    lambda v: v.recompute_columns("n"),
    lambda v: v.move_media("img", "/tmp/elsewhere"),
    lambda v: v.revert(to=0),
    lambda v: v.set_version_retention(days=1),
])
def test_every_write_to_a_version_is_refused_naming_it(history, call):
    db, t = history
    before = t.get_versions(1)[0]["version"]
    with pytest.raises(VersionError, match=r"'dir.t:2' is version 2 of table 'dir.t', "
                                           r"read-only: .*revert\(to=2\)"):
        call(db.get_table("dir.t:2"))
    assert t.get_versions(1)[0]["version"] == before


def test_the_write_operation_refuses_a_version_too(history):
    """The second line of defence: a version's description never enters a write."""
    db, _ = history
    meta = db.get_table("dir.t:2")._meta()
    with pytest.raises(VersionError, match="read-only"):
        writes.Operation(db.places, meta)
    with pytest.raises(VersionError, match="is a version of a table, not a table"):
        db.drop_table("dir.t:2")


@pytest.mark.parametrize("path,error,match", [
    ("dir.t:9", NotFoundError, "has no version 9 yet: its current version is 5"),
    ("dir.t:x", VersionError, "must be a whole number"),
    ("dir.t:-1", VersionError, "must be a whole number"),
    ("dir.t:", VersionError, "must be a whole number"),
    ("dir.nope:1", NotFoundError, "does not exist"),
    ("bad name:1", SchemaError, "invalid table path"),
])
def test_bad_versioned_paths_are_clear_errors(history, path, error, match):
    db, _ = history
    with pytest.raises(error, match=match):
        db.get_table(path)


def test_a_version_pruned_while_a_handle_is_open_says_so(history):
    db, t = history
    v1 = db.get_table("dir.t:1")
    t.set_version_retention(count=2)
    with pytest.raises(NotFoundError, match=r"version 1 of table 'dir.t' is not kept any more "
                                            r"\(it keeps versions 4 to 5\)"):
        v1.collect()
    with pytest.raises(NotFoundError, match="not kept any more"):
        db.get_table("dir.t:3")
    assert db.check().ok


def test_module_level_get_table_takes_a_version():
    t = pxl.create_table("t", {"n": pxl.Int})
    t.insert([{"n": 1}])
    t.insert([{"n": 2}])
    v1 = pxl.get_table("t:1")
    assert v1.collect()["n"] == [1]
    md = v1.get_metadata()
    assert (md["kind"], md["version"], md["base"]) == ("version", 1, "t")
    assert [v["version"] for v in v1.get_versions()] == [1, 0]
    assert "n" in repr(v1) and v1 == pxl.get_table("t:1") and v1 != t
    assert "t" in catalog.list_tables(pxl.default().db) and "t:1" not in pxl.list_tables()
